"""The gc-walk export in Chrome DevTools' ``.heapsnapshot`` format."""
