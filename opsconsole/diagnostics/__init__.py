"""Diagnostics: pure Python, no network. Each function returns frozen dataclasses;
``render`` turns them into JSON-able data and readable text in one place.

``service.Diagnostics`` is the one façade the HTTP routes and the REPL helpers call. Folders:
``objects/`` (live objects: census, growth, reference chains, reading CPython objects safely),
``heapsnapshot/`` (the gc walk written as a Chrome DevTools ``.heapsnapshot``), ``allocations/``
(everything tracemalloc), ``leaks/`` (the leak detector), ``profiler/`` (CPU samples) and
``render/``; threads, gc, process, the dump worker and the walk budget are single modules here.
"""
