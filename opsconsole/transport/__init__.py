"""The console's two doors: ``http`` (Tornado: JSON routes, the websocket terminal, the web UI)
and ``ssh`` (paramiko: a shell for the OpenSSH client). Both authenticate through the one
Authenticator and open terminals through ``repl.factory.ReplFactory``; ``admission`` (pre-auth
connection limits) is shared by both. Nothing is imported here.
"""
