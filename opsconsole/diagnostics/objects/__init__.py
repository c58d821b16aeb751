"""Live objects: census and growth, reference chains, and reading CPython objects without
running host code."""
