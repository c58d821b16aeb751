"""Authentication: who may log in (authorized_keys, TOTP secrets) and how (SSHSIG, then TOTP).

Bytes and an injected clock in, a ``Principal`` or an ``AuthError`` out; no sockets. The
one ``Authenticator`` serves every door; ``signer`` is the client side the CLI uses.
"""
