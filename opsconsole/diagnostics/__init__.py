"""Diagnostics: pure Python, no network. Each function returns frozen dataclasses;
``render`` turns them into JSON-able data and readable text in one place."""
