"""Determinism of the delivered stream: one flag per check (0 is good), epoch diversity, the count of failed checks."""

from feedbench.suite import benchmarks as suite

from . import _grid as grid

Stream = suite.determinism(grid.GRID)
