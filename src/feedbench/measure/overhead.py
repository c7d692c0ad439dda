"""How much the harness itself costs: ``feedbench overhead``.

The generator does nothing but return one preallocated batch, so its epoch
time is Keras's data path plus whatever feedbench adds. The same epochs are
timed twice, interleaved: walking Keras's own epoch iterator bare, and through
``measure_throughput``'s full path (driver, shape checks, time limit,
per-batch records). The overhead is the median of the paired ratios, minus one.

On a shared 2-core machine that end-to-end figure carries several percent of
noise, so the harness's own code is also timed alone, per batch, over an epoch
iterator whose batches cost nothing, and set against the bare Keras time per
batch: a figure with little noise.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from feedbench.core.data import make_source
from feedbench.core.spec import Built, Spec
from feedbench.fit import driver, keras_api
from feedbench.measure.throughput import throughput_of


class Preallocated(keras.utils.PyDataset):
    """Returns the same batch for every index: the cheapest possible generator."""

    def __init__(self, batch, batches: int):
        super().__init__()
        self.batch, self.batches = batch, batches

    def __len__(self):
        return self.batches

    def __getitem__(self, idx):
        return self.batch


class _NullEpochIterator:
    """Stands in for Keras's epoch iterator with batches that cost nothing to fetch,
    so that timing the harness over it times the harness alone."""

    def __init__(self, batch, batches: int):
        self.batch, self.batches = [batch], batches
        self.data_adapter = None

    def reset(self):
        pass

    def catch_stop_iteration(self):
        return contextlib.nullcontext()

    def __iter__(self):
        for step in range(self.batches):
            yield step, step, self.batch


def harness_cost_per_batch(batches: int, batch_size: int, repeats: int) -> float:
    """Seconds the harness's own code spends per batch (median over repeats)."""
    built = _built(batches, batch_size)
    real = keras_api.epoch_iterator
    keras_api.epoch_iterator = lambda *args, **kwargs: _NullEpochIterator(built.dataset.batch, batches)
    try:
        per_batch = []
        for _ in range(repeats):
            start = time.perf_counter()
            throughput_of(built, epochs=1)
            per_batch.append((time.perf_counter() - start) / batches)
    finally:
        keras_api.epoch_iterator = real
    return float(np.median(per_batch))


@dataclass
class OverheadResult:
    backend: str
    batches_per_epoch: int
    batch_size: int
    repeats: int
    bare_epoch_s: float  # median
    harness_epoch_s: float  # median
    overhead_fraction: float  # median over paired runs of harness / bare, minus one
    overhead_p25: float
    overhead_p75: float
    harness_per_batch_s: float  # the harness's own code per batch, timed alone
    harness_fraction: float  # that, over the bare Keras time per batch

    def to_dict(self) -> dict:
        return asdict(self)


def _built(batches: int, batch_size: int) -> Built:
    source = make_source(n=batch_size, traced=True)
    dataset = Preallocated((np.array(source.x), source.y), batches)
    return Built(
        Spec("preallocated", n_samples=batch_size * batches, batch_size=batch_size), "pydataset", dataset, source
    )


def bare_epoch_times(built: Built, epochs: int) -> list[float]:
    """Keras's epoch iterator walked with nothing around it.

    An epoch's time runs from the previous epoch's last batch to its own last
    batch, the same window ``harness_epoch_times`` uses.
    """
    iterator = keras_api.epoch_iterator(built.dataset, **built.fit_kwargs())
    iterator.reset()
    ends = []
    for _ in range(epochs):
        with iterator.catch_stop_iteration():
            for _, _, data in iterator:
                # Reading the batch size waits for the tensor to be ready, as
                # any consumer (a train step) does; the harness reads it too.
                len(driver.batch_of(data)[0])
        ends.append(time.perf_counter())
    return list(np.diff(ends))


def harness_epoch_times(built: Built, epochs: int) -> list[float]:
    """The same epochs through ``measure_throughput``'s full path."""
    result = throughput_of(built, epochs)
    ends = []
    for epoch in result.epochs:
        ends.append(epoch.last_arrival)
    return list(np.diff(ends))


def measure_overhead(repeats: int = 15, batches: int = 1000, batch_size: int = 32) -> OverheadResult:
    """Paired runs, in alternating order, so drifts in machine load hit both alike.

    The objects that exist before the runs are frozen out of the garbage
    collector (in both arms alike): a full collection then no longer rescans
    TensorFlow's millions of objects, a pause that otherwise lands in
    whichever arm happens to trigger it and swamps a 2 % signal.
    """
    gc.collect()
    gc.freeze()
    try:
        return _paired(repeats, batches, batch_size)
    finally:
        gc.unfreeze()


def _paired(repeats: int, batches: int, batch_size: int) -> OverheadResult:
    bare, harness, ratios = [], [], []
    for repeat in range(repeats):
        runs = [bare_epoch_times, harness_epoch_times]
        if repeat % 2:
            runs.reverse()
        times = {run: run(_built(batches, batch_size), epochs=4) for run in runs}
        bare += times[bare_epoch_times]
        harness += times[harness_epoch_times]
        ratios.append(np.median(times[harness_epoch_times]) / np.median(times[bare_epoch_times]))
    low, high = np.percentile(ratios, [25, 75]) - 1
    own = harness_cost_per_batch(batches, batch_size, repeats)
    bare_s = float(np.median(bare))
    return OverheadResult(
        keras_api.backend(),
        batches,
        batch_size,
        repeats,
        bare_s,
        float(np.median(harness)),
        float(np.median(ratios) - 1),
        float(low),
        float(high),
        own,
        own / (bare_s / batches),
    )
