"""``feedbench findings``, the measuring half: every measurement the findings rest on.

Stream determinism and memory through :mod:`feedbench.run.sweep`, training runs with seed
repeats, real ``fit`` streams on each installed backend (each in a child process with its
``KERAS_BACKEND``) and on legacy Keras 2, into one ``Findings`` record that
:mod:`feedbench.report.findings` renders (stored as its JSON in docs/findings.json).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from feedbench.core.child import ChildFailed, run_child, serve
from feedbench.core.records import Record
from feedbench.core.spec import Spec
from feedbench.fit.training import TrainingSummary
from feedbench.measure.setting import SettingResult

SETTINGS = [(1, False), (2, False), (2, True)]
STREAM_IMPLS = ("seed_unseeded", "seed_reseeded", "seed_bounded", "numpy_global", "keyed")
TRAIN_IMPLS = STREAM_IMPLS
N, BATCH = 1000, 64  # 16 batches, the last one uneven (40 samples)
EPOCHS = 3
TIMEOUT_S = 60.0
SEEDS = 3
BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_CASES = [("keyed", 1, False), ("keyed", 2, True)]


def key(impl: str, workers: int, mp: bool, shuffle: bool = False) -> str:
    """A setting's name in ``Findings``: implementation, workers, multiprocessing, shuffle."""
    return f"{impl}|{workers}|{int(mp)}|{int(shuffle)}"


@dataclass
class TaskFacts(Record):
    """The training task the accuracy figures come from (``feedbench.fit.training.Task``)."""

    n_train: int
    n_val: int
    epochs: int
    band_brightness: float
    seeds: int


@dataclass
class Preprocessing(Record):
    """Training batches standardized and blurred, with validation preprocessed alike or not."""

    consistent: TrainingSummary
    inconsistent: TrainingSummary


@dataclass
class Findings(Record):
    """Every measurement the findings rest on, with where and when they were made.

    Attributes:
        machine, cores, when, keras, backend, device: where, when and on what they were measured.
        stream: stream determinism and memory per setting (``key``, shuffle off except where named).
        training: accuracy over seeds per setting (``key`` with shuffle on).
        preprocessing: the preprocessing claim's two training runs.
        task: the training task.
        backends: per installed Keras backend, a real fit's stream per case (``key``), or ``{"error": ...}``.
        legacy: legacy Keras 2 streams per case (``key``), each a stream or ``{"error": ...}``.
    """

    machine: str
    cores: int
    when: str
    keras: str
    backend: str
    device: str
    stream: dict[str, SettingResult]
    training: dict[str, SettingResult]
    preprocessing: Preprocessing
    task: TaskFacts
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    legacy: dict[str, dict[str, Any]] = field(default_factory=dict)


def measure(progress=print) -> Findings:
    import keras

    from feedbench.fit import training as train
    from feedbench.run import legacy, sweep

    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    stream_keys, stream_specs = [], []
    for impl in STREAM_IMPLS:
        for workers, mp in SETTINGS:
            stream_keys.append(key(impl, workers, mp))
            stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, workers=workers, use_multiprocessing=mp))
    for impl in ("seed_bounded", "keyed"):  # shuffling: fit's global `random` against keyed planning
        stream_keys.append(key(impl, 1, False, True))
        stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, shuffle=True))
    progress(f"stream and memory: {len(stream_specs)} settings ...")
    stream = dict(zip(stream_keys, sweep.sweep(stream_specs, ("memory", "determinism"), EPOCHS, TIMEOUT_S)))

    task = train.Task()
    train_keys, train_specs = [], []
    for impl in TRAIN_IMPLS:
        for workers, mp in SETTINGS:
            train_keys.append(key(impl, workers, mp, True))
            train_specs.append(task.spec(impl, workers=workers, use_multiprocessing=mp))
    progress(f"training: {len(train_specs)} settings x {SEEDS} seeds ...")
    training = dict(zip(train_keys, sweep.sweep(train_specs, ("training",), task.epochs, TIMEOUT_S, seeds=SEEDS)))

    progress("preprocessing: training standardized and blurred, validation with and without it ...")
    numpy_spec = task.spec("keyed", workload="numpy")
    preprocessing = Preprocessing(
        consistent=train.measure_training(numpy_spec, task.epochs, SEEDS, TIMEOUT_S).summary(),
        inconsistent=train.measure_training(
            numpy_spec, task.epochs, SEEDS, TIMEOUT_S, preprocess_validation=False
        ).summary(),
    )
    results = Findings(
        machine=platform.node(),
        cores=os.cpu_count() or 1,
        when=started,
        keras=keras.__version__,
        backend=keras.backend.backend(),
        device=train.current_device(),
        stream=stream,
        training=training,
        preprocessing=preprocessing,
        task=TaskFacts(task.n_train, task.n_val, task.epochs, task.band_brightness, SEEDS),
    )

    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        progress(f"real fit streams on Keras backend {backend} ...")
        try:
            results.backends[backend] = run_child(
                "feedbench.run.findings", {}, 600, {"KERAS_BACKEND": backend}, what=f"fit streams on {backend}"
            )[0]
        except ChildFailed as exc:
            results.backends[backend] = {"error": str(exc)}

    from feedbench.fit.legacy import available

    if available():
        for kind, workers, mp in [("sequence", 2, True), ("generator", 1, False), ("generator", 2, True)]:
            progress(f"legacy Keras 2: {kind}, workers={workers}, use_multiprocessing={mp} ...")
            try:
                run = legacy.legacy_stream(kind, workers, mp, epochs=2, timeout_s=120)
                results.legacy[key(kind, workers, mp)] = {k: v for k, v in run.items() if k != "ids"}
            except Exception as exc:  # a failing setting is a result too
                results.legacy[key(kind, workers, mp)] = {"error": str(exc).splitlines()[0]}
    return results


def backend_streams(request: dict) -> list[dict]:
    """In a child with its own KERAS_BACKEND: what a real fit delivers for each case."""
    from feedbench.fit import tap
    from feedbench.generators import build

    out = {}
    for impl, workers, mp in BACKEND_CASES:
        spec = Spec(impl, n_samples=100, batch_size=16, shuffle=True, workers=workers, use_multiprocessing=mp)
        out[key(impl, workers, mp, True)] = tap.fit_stream(build(spec), epochs=2, timeout_s=TIMEOUT_S).summary(100)
    return [out]


if __name__ == "__main__":
    sys.exit(serve(backend_streams))
