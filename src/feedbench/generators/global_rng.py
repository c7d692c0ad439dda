"""``numpy_global``: augmentation drawn from NumPy's global RNG, the most common pattern.

Each batch copies its rows (nothing is written into the source) and flips and
brightens them with ``np.random.random`` / ``np.random.uniform``. It shuffles
the way most Sequences do, through ``fit(shuffle=True)``. Under threads the
draws interleave (not reproducible); in forked workers every worker starts
from a copy of the parent's RNG state, and Keras forks a fresh pool from the
same state every epoch: draws repeat across workers and epochs.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from feedbench.core.spec import Built, Spec
from feedbench.generators.keying import BRIGHTNESS_JITTER


class GlobalRngDataset(keras.utils.PyDataset):
    def __init__(self, source, batch_size, work, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.batch_size = batch_size
        self.work = work

    def __len__(self):
        return math.ceil(self.source.n / self.batch_size)

    def __getitem__(self, idx):
        rows = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
        x = np.array(self.source.x[rows])
        flip = np.random.random(len(x)) < 0.5
        x[flip] = x[flip, :, ::-1]
        x += np.random.uniform(-BRIGHTNESS_JITTER, BRIGHTNESS_JITTER, len(x)).astype(np.float32)[:, None, None, None]
        return self.work.apply(x), np.array(self.source.y[rows])


def build(spec: Spec, source) -> Built:
    dataset = GlobalRngDataset(source, spec.batch_size, spec.work, **spec.parallel_settings())
    return Built(spec, "pydataset", dataset, source, fit_shuffle=spec.shuffle)
