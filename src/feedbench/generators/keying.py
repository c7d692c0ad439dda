"""Keyed randomness: every draw is a pure function of (seed, epoch, batch index).

Shared by the implementations that promise a stream identical under any
worker setting: ``keyed``, ``generator`` and ``tfdata_pyfunc``. Nothing here
touches a global RNG, so forked workers, threads and the main process all
compute the same batch for the same key.
"""

from __future__ import annotations

import numpy as np

from feedbench.core.data import Source
from feedbench.core.workloads import Workload

BRIGHTNESS_JITTER = 0.1


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The sample order of one epoch, planned from (seed, epoch) alone."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0x5F]).permutation(n)


def keyed_batch(
    source: Source,
    order: np.ndarray,
    batch_size: int,
    index: int,
    seed: int,
    epoch: int,
    work: Workload,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``index`` of an epoch: gathered (a copy, never a view), augmented, worked."""
    rows = order[index * batch_size : (index + 1) * batch_size]
    x = np.asarray(source.x[rows])  # fancy indexing copies: the source is never written
    y = np.asarray(source.y[rows])
    rng = np.random.default_rng([seed, epoch, index])
    flip = rng.random(len(rows)) < 0.5
    x[flip] = x[flip, :, ::-1]
    x += rng.uniform(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER, len(rows)).astype(np.float32)[:, None, None, None]
    return work.apply(x), y


class KeyedBatches:
    """keyed's stream as a picklable function of ``(epoch, index)``, for loaders that run it in
    their own workers (torch's DataLoader, Grain): the same batch for the same key, anywhere."""

    def __init__(self, source: Source, batch_size: int, seed: int, shuffle: bool, work: Workload):
        self.source, self.batch_size, self.seed, self.shuffle, self.work = source, batch_size, seed, shuffle, work
        self._orders: dict[int, np.ndarray] = {}

    def __call__(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        order = self._orders.get(epoch)
        if order is None:  # (a local: read threads may replace the dict meanwhile)
            order = epoch_order(self.seed, epoch, self.source.n, self.shuffle)
            self._orders = {epoch: order}  # one epoch held
        return keyed_batch(self.source, order, self.batch_size, index, self.seed, epoch, self.work)

    def __getstate__(self):
        return {**self.__dict__, "_orders": {}}
