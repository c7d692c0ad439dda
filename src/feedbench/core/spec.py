"""One spec builds any implementation; a Built is what the driver feeds.

``Spec`` holds everything a run is built from. Settings that do not apply to
an implementation's family are reported in ``Built.not_applicable`` with the
reason, never silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from feedbench.core.data import BAND_BRIGHTNESS, SIZES, Source
from feedbench.core.errors import BadDataset
from feedbench.core.workloads import WORKLOADS, Workload

FAMILIES = ("pydataset", "generator", "tfdata", "torch_dataloader", "grain")
# Families whose datasets know their epoch's length (fit is not told steps_per_epoch for them:
# Keras then starts each epoch on a fresh iterator, as it does in a user's fit).
SIZED_FAMILIES = ("pydataset", "torch_dataloader")

# Keras 3 parallelizes only PyDatasets; generators and tf.data pipelines run
# as they are. These are the values that mean "no parallel setting asked for".
PARALLEL_DEFAULTS = {"workers": 1, "use_multiprocessing": False, "max_queue_size": 10}
NOT_PARALLEL_REASON = {
    "generator": "Keras 3 feeds a Python generator serially in the main process; "
    "workers/use_multiprocessing/max_queue_size exist only for PyDataset",
    "tfdata": "a tf.data pipeline parallelizes itself (num_parallel_calls, prefetch); "
    "workers/use_multiprocessing/max_queue_size exist only for PyDataset",
    "torch_dataloader": "a torch DataLoader runs its own workers (num_workers); "
    "workers/use_multiprocessing/max_queue_size exist only for PyDataset",
    "grain": "a Grain dataset runs its own workers (mp_prefetch); "
    "workers/use_multiprocessing/max_queue_size exist only for PyDataset",
}


@dataclass(frozen=True)
class Spec:
    impl: str
    size: str = "small"
    n_samples: int = 512
    batch_size: int = 32
    workload: str = "copy"
    workers: int = 1
    use_multiprocessing: bool = False
    max_queue_size: int = 10
    seed: int = 0
    shuffle: bool = False
    traced: bool = True
    python_iters: int = 2000
    io_latency_s: float = 0.0
    band_brightness: float = BAND_BRIGHTNESS  # lower is a harder task (training)
    steps: int | None = None  # batches per epoch, for a dataset without a length (fit's steps_per_epoch)
    probe: bool = False  # every sample the same content, ids still traced (the determinism probe)
    fit_shuffle: bool | None = None  # fit's own shuffle for a PyDataset; None: the implementation's choice

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"unknown source size {self.size!r}; expected one of {sorted(SIZES)}")
        if self.workload not in WORKLOADS:
            raise ValueError(f"unknown workload {self.workload!r}; expected one of {list(WORKLOADS)}")
        for name in ("n_samples", "batch_size", "max_queue_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} given; expected a positive integer")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers} given; expected 0 or more")
        if self.workers == 0 and self.use_multiprocessing:
            raise ValueError("workers=0 with use_multiprocessing=True given; expected workers of 1 or more")
        if self.steps is not None and self.steps <= 0:
            raise ValueError(f"steps={self.steps} given; expected a positive number of batches per epoch")
        if not self.io_latency_s >= 0:
            raise ValueError(f"io_latency_s={self.io_latency_s} given; expected 0 or more seconds")

    @property
    def work(self) -> Workload:
        return Workload(self.workload, self.python_iters, self.io_latency_s)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)

    def parallel_settings(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in PARALLEL_DEFAULTS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Built:
    """A dataset ready to feed, and what the driver must know to feed it as fit would."""

    spec: Spec
    family: str
    dataset: Any
    source: Source
    fit_shuffle: bool = False  # fit's own `shuffle` argument for this dataset
    steps_per_epoch: int | None = None  # fit's `steps_per_epoch`, needed for endless generators
    drops_last_partial: bool = False  # the implementation drops an uneven last batch by design
    not_applicable: dict[str, str] = field(default_factory=dict)
    # A loader with workers of its own (torch, Grain, the tf.data service): the parallel settings
    # it really runs, mapped from the spec's, and what stops its workers or servers.
    applied_settings: dict[str, Any] | None = None
    release: Callable[[], None] | None = None

    @property
    def expected_batches(self) -> int:
        if self.spec.steps:
            return self.spec.steps
        if self.drops_last_partial:
            return self.spec.n_samples // self.spec.batch_size
        if self.family == "pydataset":
            return self.dataset.num_batches
        return self.steps_per_epoch or self.spec.batches_per_epoch

    def fit_kwargs(self) -> dict[str, Any]:
        """``model.fit``'s data arguments for this dataset: the driver, training and the tap all pass these.

        A generator or a repeating tf.data pipeline has no length of its own, so fit is told the
        epoch's length; a PyDataset knows its own.
        """
        steps = self.spec.steps or self.steps_per_epoch
        if steps is None and self.family == "pydataset" and self.dataset.num_batches is None:
            raise BadDataset(
                f"{self.spec.impl} is an infinite PyDataset (num_batches is None); expected steps per epoch "
                "(--steps N, or Spec(steps=N)), as fit needs steps_per_epoch for it"
            )
        if steps is None and self.family not in SIZED_FAMILIES:
            steps = self.spec.batches_per_epoch
        return {"shuffle": self.fit_shuffle, "steps_per_epoch": steps}

    def applied(self) -> dict[str, Any] | None:
        """The parallel settings the built PyDataset really has (None for other families).

        A PyDataset whose ``__init__`` does not pass ``**kwargs`` to ``super().__init__()`` keeps
        Keras's defaults whatever the spec asked for.
        """
        if self.applied_settings is not None:
            return dict(self.applied_settings)
        if self.family != "pydataset":
            return None
        return {key: getattr(self.dataset, key, None) for key in PARALLEL_DEFAULTS}

    def close(self) -> None:
        """Release what the dataset holds between epochs (shm's worker pool, a loader's own workers
        or servers); a no-op for most."""
        if self.release is not None:
            self.release()
        closer = getattr(self.dataset, "close", None) if self.family == "pydataset" else None
        if callable(closer):
            closer()

    @property
    def expected_samples(self) -> int:
        if self.drops_last_partial:
            return self.expected_batches * self.spec.batch_size
        return self.spec.n_samples


def own_workers_not_applicable(spec: Spec, queue: str, threads: str | None = None) -> dict[str, str]:
    """For a loader with workers of its own: Keras's queue size is never its (``queue`` says why);
    thread workers are not, when ``threads`` says why (it has processes only)."""
    skipped = {}
    if threads is not None and not spec.use_multiprocessing and spec.workers > 1:
        skipped["workers"] = threads
    if spec.max_queue_size != PARALLEL_DEFAULTS["max_queue_size"]:
        skipped["max_queue_size"] = queue
    return skipped


def not_applicable(family: str, spec: Spec) -> dict[str, str]:
    """The settings of ``spec`` that the family cannot honour, each with the reason."""
    if family not in NOT_PARALLEL_REASON:
        return {}
    reason = NOT_PARALLEL_REASON[family]
    return {key: reason for key, default in PARALLEL_DEFAULTS.items() if getattr(spec, key) != default}
