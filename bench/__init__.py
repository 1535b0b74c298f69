"""Benchmarks: `make bench` (`python -m bench`) runs every module here and writes docs/benchmarks/."""
