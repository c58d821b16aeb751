"""Everything tracemalloc: tracing on and off, named snapshots and their files, diffs."""
