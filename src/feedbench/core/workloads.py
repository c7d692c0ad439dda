"""Workloads: what ``__getitem__`` costs besides slicing.

A workload is deterministic: it changes how long a batch takes, never which
random augmentation it gets, so it cannot hide or fake a determinism problem.

- ``copy``: slice and copy only. Transfer-bound: shows what moving batches
  between processes (pickling through a pipe) costs.
- ``numpy``: vectorized per-sample standardization and a box blur; NumPy
  releases the GIL, so threads help.
- ``python``: a per-sample pure-Python loop that holds the GIL; threads cannot
  help, processes can.
- ``io``: the source is read from an on-disk ``.npy`` memmap, with an optional
  simulated storage latency per batch (a sleep, which releases the GIL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

WORKLOADS = ("copy", "numpy", "python", "io")


@dataclass(frozen=True)
class Workload:
    name: str = "copy"
    python_iters: int = 2000  # per sample, for "python"
    io_latency_s: float = 0.0  # per batch, for "io"

    def __post_init__(self):
        if self.name not in WORKLOADS:
            raise ValueError(f"unknown workload {self.name!r}; expected one of {list(WORKLOADS)}")

    @property
    def storage(self) -> str:
        """Where the source must live for this workload."""
        return "disk" if self.name == "io" else "memory"

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The extra cost of one batch; returns the batch to deliver."""
        if self.name == "numpy":
            return _standardize_and_blur(x)
        if self.name == "python":
            for _ in range(len(x)):
                _spin(self.python_iters)
        elif self.name == "io" and self.io_latency_s > 0:
            time.sleep(self.io_latency_s)
        return x


def _spin(iterations: int) -> int:
    acc = 0
    for i in range(iterations):
        acc += i * i
    return acc


def _standardize_and_blur(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    out = (x - mean) / std
    blurred = out.copy()  # 3-tap box blur along rows and columns
    blurred[:, 1:-1] += out[:, :-2] + out[:, 2:]
    blurred[:, :, 1:-1] += blurred[:, :, :-2] + blurred[:, :, 2:]
    blurred /= 9.0
    return blurred
