"""Memory of the whole process tree (asv's own peakmem_ sees the main process only), and leaks."""

from feedbench.suite import benchmarks as suite

from . import _grid as grid

TreeMemory = suite.memory(grid.GRID)
