"""Throughput: one epoch timed by asv, and samples/s tracked (absolute, and against a reference setting)."""

from feedbench.suite import benchmarks as suite

from . import _grid as grid

EpochTime, Throughput = suite.throughput(grid.GRID)
