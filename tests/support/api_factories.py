"""Factories as a user writes them for feedbench.profile: keyword settings, optionally x and y."""

import math

import keras
import numpy as np


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size=16, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.array(self.x[rows]), self.y[rows]


def traced(x, y, workers=1, use_multiprocessing=False, max_queue_size=10):
    """Takes x and y: feedbench hands it its traced arrays."""
    return Batches(x, y, workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)


def own_data(workers=1, use_multiprocessing=False):
    """Reads its own data (here made up on the spot); one batch served twice in every epoch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 2, 96)
    x[16:32], y[16:32] = x[:16], y[:16]  # batch 1 repeats batch 0
    return Batches(x, y, workers=workers, use_multiprocessing=use_multiprocessing)


def dataset_object():
    rng = np.random.default_rng(1)
    return Batches(rng.standard_normal((64, 8, 8, 3)).astype(np.float32), rng.integers(0, 2, 64))
