"""Generators with one known flaw each, used as plug-in factories by the tests.

They live in tests/, never in src/: feedbench must catch them, not ship them.
Each is a factory(spec, source), the plug-in signature.
"""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np

from feedbench.generators.keyed import KeyedDataset

FAIL_AT = 3


class _Planted(KeyedDataset):
    def __init__(self, spec, source, **extra):
        super().__init__(source, spec.batch_size, spec.seed, spec.shuffle, spec.work, **spec.parallel_settings())
        for key, value in extra.items():
            setattr(self, key, value)


class Raising(_Planted):
    def __getitem__(self, idx):
        if idx == FAIL_AT:
            raise ValueError(f"planted failure at index {idx}")
        return super().__getitem__(idx)


class Hanging(_Planted):
    """Waits forever at one index, in short sleeps as a polling loop would."""

    def __getitem__(self, idx):
        if idx == FAIL_AT:
            while True:
                time.sleep(0.05)
        return super().__getitem__(idx)


class ShapeShifting(_Planted):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        if idx == FAIL_AT:
            x = x[:, :-4]
        return x, y


class Empty(keras.utils.PyDataset):
    def __len__(self):
        return 0

    def __getitem__(self, idx):
        raise IndexError(idx)


def raising(spec, source):
    return Raising(spec, source)


def hanging(spec, source):
    return Hanging(spec, source)


def shape_shifting(spec, source):
    return ShapeShifting(spec, source)


def empty(spec, source):
    return Empty()


def not_a_dataset(spec, source):
    return {"x": source.x}


def plain_generator(spec, source):
    """A user's own generator, endless, of plain slices."""

    def batches():
        while True:
            for i in range(math.ceil(source.n / spec.batch_size)):
                rows = slice(i * spec.batch_size, (i + 1) * spec.batch_size)
                yield np.array(source.x[rows]), source.y[rows]

    return batches()


NOT_CALLABLE = 42
WORKER_PID_FILE = os.environ.get("FEEDBENCH_TEST_PIDS", "")
