"""Leak detection: periodic census and memory samples, their trend, and the verdict."""
