"""Analyzers: each a plain function of (built implementation, run settings)
returning a dataclass that serializes to JSON. The asv suite and the command
line are two thin faces of them; nothing here imports ``benchmarks``.
"""

from feedbench.measure.determinism import DeterminismResult, measure_determinism
from feedbench.measure.memory import MemoryResult, measure_memory
from feedbench.measure.throughput import ThroughputResult, measure_throughput

__all__ = [
    "DeterminismResult",
    "MemoryResult",
    "ThroughputResult",
    "measure_determinism",
    "measure_memory",
    "measure_throughput",
]
