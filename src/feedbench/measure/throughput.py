"""Throughput per epoch, from the times batches reach the consumer.

- ``first_batch_s``: from the moment the consumer asks for an epoch's first
  batch until it arrives. It includes the pool start-up that Keras repeats at
  every epoch with multiprocessing (and, in epoch 0, building the iterator).
- ``samples_per_s``: steady state, the samples after the first batch divided
  by the time from the first batch's arrival to the last one's. With short
  epochs this swings with how many batches were already queued when the first
  arrived (a burst), so it does not repeat well.
- ``epoch_samples_per_s``: an epoch's samples over its whole wall time, the
  first batch (and the pool start-up Keras repeats every epoch) included: what
  ``fit`` gets from the loader per epoch. It repeats to a few per cent, and is
  the figure the benchmark suite tracks.
- latency p50 / p95 / max: per batch, from asking to arrival.
- ``wait_fraction``: the share of the epoch's wall time the consumer spent
  waiting for data (1.0 for a consumer that does nothing else).

``step_s`` makes the consumer spend that long per batch, as a train step
would, to show whether prefetching hides the generator's latency.

Summaries are medians over the epochs after the first (which also builds the
iterator). ``measure_throughput`` runs at least ``epochs`` epochs and goes on
until those epochs cover ``min_s`` seconds (at most ``MAX_EPOCHS``): an epoch
of 16 batches takes milliseconds, and a figure timed over milliseconds on a
shared machine does not repeat.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from feedbench.core.records import Record
from feedbench.core.spec import Built, Spec
from feedbench.fit import driver
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S
from feedbench.generators import build

MIN_MEASURED_S = 1.0  # measuring epochs (after the first) cover at least this long
# A figure field marked so is a list of samples: repeats of a setting join theirs (not a median), and
# the figure the metadata names becomes the median of the joined samples
POOLED = "pooled"
MAX_EPOCHS = 50


@dataclass
class EpochThroughput:
    epoch: int
    batches: int
    samples: int
    wall_s: float
    first_batch_s: float
    samples_per_s: float | None  # None with a single batch: no steady state to time
    epoch_samples_per_s: float | None  # samples over the whole epoch's wall time
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    wait_fraction: float
    last_arrival: float  # perf_counter of the epoch's last batch


@dataclass
class ThroughputFigures(Record):
    """The figures of a setting's throughput that a report shows: medians over epochs."""

    first_batch_s: float | None = None
    samples_per_s: float | None = None
    epoch_samples_per_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    wait_fraction: float | None = None
    # Each measured epoch's rate, the spread asv gets as statistics; repeats pool theirs and the
    # figure is the pool's median (POOLED), so asv's median of the samples stays the figure.
    measured_epochs_samples_per_s: list[float] | None = field(default=None, metadata={POOLED: "epoch_samples_per_s"})


@dataclass
class ThroughputResult:
    epochs: list[EpochThroughput] = field(default_factory=list)

    # summary key -> the per-epoch field it is the median of
    SUMMARY = {
        "first_batch_s": "first_batch_s",
        "samples_per_s": "samples_per_s",
        "epoch_samples_per_s": "epoch_samples_per_s",
        "latency_p50_s": "latency_p50_s",
        "latency_p95_s": "latency_p95_s",
        "wait_fraction": "wait_fraction",
        "epoch_s": "wall_s",
    }

    def _measured(self, key: str) -> list:
        """``key`` of each epoch after the first (the only one when there is one), where it has one."""
        measuring = self.epochs[1:] if len(self.epochs) > 1 else self.epochs
        return [getattr(e, key) for e in measuring if getattr(e, key) is not None]

    def _median(self, key: str) -> float | None:
        values = self._measured(key)
        return float(np.median(values)) if values else None

    def summary(self) -> dict:
        """Medians over the epochs after the first (the only one when there is one): the figures a
        report shows. The first batch of the first epoch also builds the iterator: it is its own
        figure, ``first_build_s``."""
        summary = {key: self._median(field) for key, field in self.SUMMARY.items()}
        summary["first_build_s"] = self.epochs[0].first_batch_s if self.epochs else None
        summary["measured_epochs_samples_per_s"] = self._measured("epoch_samples_per_s") or None
        return summary

    @property
    def samples_per_s(self) -> float | None:
        return self._median("samples_per_s")

    @property
    def latency_p50_s(self) -> float | None:
        return self._median("latency_p50_s")

    def figures(self) -> ThroughputFigures:
        summary = self.summary()
        return ThroughputFigures(**{f: summary[f] for f in ThroughputFigures.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {**self.summary(), "per_epoch": [asdict(e) for e in self.epochs]}


def measure_throughput(
    spec: Spec,
    epochs: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    step_s: float = 0.0,
    plugins=(),
    min_s: float = MIN_MEASURED_S,
) -> ThroughputResult:
    return throughput_of(build(spec, plugins), epochs, timeout_s, step_s, min_s)


def throughput_of(
    built: Built, epochs: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, step_s: float = 0.0, min_s: float = 0.0
) -> ThroughputResult:
    """The same measurement on a dataset already built: ``epochs`` epochs, and more (up to
    MAX_EPOCHS) until the epochs after the first cover ``min_s`` seconds (0: exactly ``epochs``)."""
    if min_s < 0:
        raise ValueError(f"min_s={min_s} given; expected 0 or more seconds")
    records: dict[int, list[tuple[float, float, int]]] = {}  # epoch -> (asked, arrived, rows)
    last_step = built.expected_batches - 1
    most = max(epochs, MAX_EPOCHS) if min_s else epochs
    asked = time.perf_counter()
    with contextlib.closing(driver.drive(built, most, timeout_s, materialize=False)) as batches:
        for batch in batches:
            if min_s and batch.epoch >= epochs and batch.epoch not in records and _covered(records) >= min_s:
                break  # an epoch began that is not needed (a loader whose length was not known)
            records.setdefault(batch.epoch, []).append((asked, batch.t, batch.rows))
            if step_s:
                _busy(step_s)
            if min_s and batch.step == last_step and batch.epoch + 1 >= epochs and _covered(records) >= min_s:
                break
            asked = time.perf_counter()
    return ThroughputResult([_epoch(epoch, rows) for epoch, rows in sorted(records.items())])


def _covered(records: dict[int, list[tuple[float, float, int]]]) -> float:
    """Seconds the epochs after the first span, from asking for their first batch to their last."""
    return sum(rows[-1][1] - rows[0][0] for epoch, rows in records.items() if epoch > 0)


def _epoch(epoch: int, rows: list[tuple[float, float, int]]) -> EpochThroughput:
    asked = np.array([r[0] for r in rows])
    arrived = np.array([r[1] for r in rows])
    samples = np.array([r[2] for r in rows])
    latency = arrived - asked
    wall = arrived[-1] - asked[0]
    steady = arrived[-1] - arrived[0]
    return EpochThroughput(
        epoch=epoch,
        batches=len(rows),
        samples=int(samples.sum()),
        wall_s=float(wall),
        first_batch_s=float(latency[0]),
        samples_per_s=float(samples[1:].sum() / steady) if len(rows) > 1 and steady > 0 else None,
        epoch_samples_per_s=float(samples.sum() / wall) if wall > 0 else None,
        latency_p50_s=float(np.percentile(latency, 50)),
        latency_p95_s=float(np.percentile(latency, 95)),
        latency_max_s=float(latency.max()),
        wait_fraction=float(latency.sum() / wall) if wall > 0 else 1.0,
        last_arrival=float(arrived[-1]),
    )


def _busy(seconds: float) -> None:
    # A train step keeps a core busy; sleeping would hand it to the generator.
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
