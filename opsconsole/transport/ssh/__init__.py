"""The SSH door: paramiko server, per-connection policy, host key, shell channel."""
