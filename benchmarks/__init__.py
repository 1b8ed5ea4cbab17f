"""Benchmarks: one command each, a table, then one summary line."""
