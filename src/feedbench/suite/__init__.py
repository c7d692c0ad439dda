"""Benchmark suites for asv: the grid (``grid``), the benchmark classes built from it
(``benchmarks``), and ``feedbench init``, which writes a suite into a user's repository (``init``).
"""
