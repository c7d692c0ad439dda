"""``feedbench findings``, the measuring half: every measurement the findings rest on.

Stream determinism and memory through :mod:`feedbench.run.sweep`, training runs with seed
repeats, real ``fit`` streams on each installed backend (each in a child process with its
``KERAS_BACKEND``) and on legacy Keras 2; the results are plain JSON that
:mod:`feedbench.report.findings` renders.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from datetime import datetime, timezone

from feedbench.core.child import ChildFailed, run_child, serve
from feedbench.core.spec import Spec

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
    return f"{impl}|{workers}|{int(mp)}|{int(shuffle)}"


def measure(progress=print) -> dict:
    import keras

    from feedbench.fit import training as train
    from feedbench.run import legacy, sweep

    results = {
        "machine": platform.node(),
        "cores": os.cpu_count(),
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": train.current_device(),
    }
    stream_keys, stream_specs = [], []
    for impl in STREAM_IMPLS:
        for workers, mp in SETTINGS:
            stream_keys.append(key(impl, workers, mp))
            stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, workers=workers, use_multiprocessing=mp))
    for impl in ("seed_bounded", "keyed"):  # shuffling: fit's global `random` against keyed planning
        stream_keys.append(key(impl, 1, False, True))
        stream_specs.append(Spec(impl, n_samples=N, batch_size=BATCH, shuffle=True))
    progress(f"stream and memory: {len(stream_specs)} settings ...")
    records = sweep.sweep(stream_specs, ("memory", "determinism"), EPOCHS, TIMEOUT_S)
    results["stream"] = {k: r.to_json() for k, r in zip(stream_keys, records)}

    task = train.Task()
    train_keys, train_specs = [], []
    for impl in TRAIN_IMPLS:
        for workers, mp in SETTINGS:
            train_keys.append(key(impl, workers, mp, True))
            train_specs.append(task.spec(impl, workers=workers, use_multiprocessing=mp))
    progress(f"training: {len(train_specs)} settings x {SEEDS} seeds ...")
    records = sweep.sweep(train_specs, ("training",), task.epochs, TIMEOUT_S, seeds=SEEDS)
    results["training"] = {k: r.to_json() for k, r in zip(train_keys, records)}

    progress("preprocessing: training standardized and blurred, validation with and without it ...")
    numpy_spec = task.spec("keyed", workload="numpy")
    results["preprocessing"] = {
        "consistent": train.measure_training(numpy_spec, task.epochs, SEEDS, TIMEOUT_S).summary().to_json(),
        "inconsistent": train.measure_training(numpy_spec, task.epochs, SEEDS, TIMEOUT_S, preprocess_validation=False)
        .summary()
        .to_json(),
    }
    results["task"] = {
        "n_train": task.n_train,
        "n_val": task.n_val,
        "epochs": task.epochs,
        "band_brightness": task.band_brightness,
        "seeds": SEEDS,
    }

    results["backends"] = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        progress(f"real fit streams on Keras backend {backend} ...")
        try:
            results["backends"][backend] = run_child(
                "feedbench.run.findings", {}, 600, {"KERAS_BACKEND": backend}, what=f"fit streams on {backend}"
            )[0]
        except ChildFailed as exc:
            results["backends"][backend] = {"error": str(exc)}

    from feedbench.fit.legacy import available

    results["legacy"] = {}
    if available():
        for kind, workers, mp in [("sequence", 2, True), ("generator", 1, False), ("generator", 2, True)]:
            progress(f"legacy Keras 2: {kind}, workers={workers}, use_multiprocessing={mp} ...")
            try:
                run = legacy.legacy_stream(kind, workers, mp, epochs=2, timeout_s=120)
                results["legacy"][key(kind, workers, mp)] = {k: v for k, v in run.items() if k != "ids"}
            except Exception as exc:  # a failing setting is a result too
                results["legacy"][key(kind, workers, mp)] = {"error": str(exc).splitlines()[0]}
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
