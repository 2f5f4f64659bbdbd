"""Benchmarks: each module compares the kit against a named peer in the same run."""
