"""Benchmarks: the paper-style PyTorch baseline, the timing runner and plots."""
