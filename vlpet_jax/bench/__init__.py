"""Benchmarks behind `launch/benchmark.py`: each module measures one thing and returns records."""
