"""The ``opsconsole`` command's client side: runs in the operator's process, never the service's."""
