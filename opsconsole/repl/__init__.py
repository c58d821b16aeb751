"""The in-process Python REPL that the console's doors (websocket, SSH) open for operators.

``session.ReplSession`` runs one ptpython REPL on its own thread and loop; ``helpers.Ops`` is
the ``ops`` object of diagnostics helpers in every session's namespace. The doors live in
``opsconsole.transport`` and only move text in and out of a session; the rules they share (size,
stall, idle and age limits) are ``limits``. Nothing is imported here,
so loading one module of this package does not load ptpython.
"""
