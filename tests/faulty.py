"""Generators that fail the way real ones do, for the fault-injection tests (tests/test_faults.py)."""

from __future__ import annotations

import math
import os
import signal

import keras
import numpy as np

_PARENT = os.getpid()
AT = 3


class _Slices(keras.utils.PyDataset):
    def __init__(self, spec, source):
        super().__init__(**spec.parallel_settings())
        self.x, self.y, self.bs = source.x, source.y, spec.batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def __getitem__(self, idx):
        rows = slice(idx * self.bs, (idx + 1) * self.bs)
        return np.array(self.x[rows]), self.y[rows]


class WorkerDies(_Slices):
    """A worker process that dies at one batch, as a crash, an abort or the OOM killer would end it."""

    how = "exit"

    def __getitem__(self, idx):
        if idx == AT and os.getpid() != _PARENT:
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), getattr(signal, self.how))
        return super().__getitem__(idx)


def worker_exits(spec, source):
    return WorkerDies(spec, source)


def worker_killed(spec, source):
    dataset = WorkerDies(spec, source)
    dataset.how = "SIGKILL"
    return dataset


def worker_aborts(spec, source):
    dataset = WorkerDies(spec, source)
    dataset.how = "SIGABRT"
    return dataset


def factory_raises(spec, source):
    raise RuntimeError("the factory's own bug")


class LenRaises(_Slices):
    def __len__(self):
        raise KeyError("n_samples")


class LenFloat(_Slices):
    def __len__(self):
        return len(self.x) / self.bs


class XYMismatch(_Slices):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        return x, y[:-1]


class EmptyBatch(_Slices):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        return (x[:0], y[:0]) if idx == AT else (x, y)


def len_raises(spec, source):
    return LenRaises(spec, source)


def len_float(spec, source):
    return LenFloat(spec, source)


def xy_mismatch(spec, source):
    return XYMismatch(spec, source)


def empty_batch(spec, source):
    return EmptyBatch(spec, source)
