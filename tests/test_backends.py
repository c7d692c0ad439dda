"""The driver on every Keras backend, each in a fresh process (the backend is
chosen at import). jax / torch run where installed (pip install -e ".[jax]"
or ".[torch]"); without them, a clear one-line error."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.backends]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    from feedbench.core import procs
    from feedbench.core.spec import Built
    from feedbench.fit import driver
    from feedbench.generators import Spec, build, BUILTINS

    assert keras.backend.backend() == "{backend}"
    before = procs.descendant_pids()

    # fit's order of calls, recorded from a real fit and from the driver
    from planted import Recorder

    fit_events, drive_events = [], []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(Recorder(fit_events), epochs=2, shuffle=False, verbose=0)
    from feedbench.core.data import make_source
    driver.run(Built(Spec("recorder"), "pydataset", Recorder(drive_events), make_source(n=6)), epochs=2)
    assert drive_events == fit_events, (drive_events, fit_events)

    for name, impl in BUILTINS.items():
        if impl.missing_reason():  # a peer whose package is not installed here
            continue
        settings = [(1, False), (2, False), (2, True)] if impl.family == "pydataset" else [(1, False)]
        if name.startswith("seed_"):
            settings = [(1, False), (2, False)]  # TensorFlow ops in forked workers can deadlock
        for workers, mp in settings:
            built = build(Spec(name, n_samples=100, batch_size=16, workers=workers, use_multiprocessing=mp))
            batches = driver.run(built, epochs=2, timeout_s=120)
            for epoch in (0, 1):
                ids = np.concatenate([b.y[:, 1] for b in batches if b.epoch == epoch])
                assert sorted(ids.tolist()) == list(range(100)), (name, workers, mp, epoch)
    procs.assert_no_new_workers(before)
    print("ok", fit_events)
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.long  # the long tier: CI pins the driver to fit in tests/test_fit_stream.py
def test_driver_matches_fit_and_feeds_every_implementation(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = dict(os.environ, KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(backend=backend)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_missing_backend_package_is_one_clear_line(backend):
    if importlib.util.find_spec(backend) is not None:
        pytest.skip(f"{backend} is installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", "keyed"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert f"No module named '{backend}'" in last and f".[{backend}]" in last


TRAINING_SCRIPT = textwrap.dedent(
    """
    import json
    from feedbench.fit import training as train
    task = train.Task(n_train=256, n_val=128, epochs=2, band_brightness=0.3)
    result = train.measure_training(task.spec("keyed", workers=2, use_multiprocessing=True), task.epochs, seeds=1)
    print(json.dumps(result.summary().to_json()))
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.long  # the long tier: a training run and a profile per backend
def test_training_and_profile_run_on_each_backend(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-c", TRAINING_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["device"] == "cpu" and summary["seeds"] == 1
    assert summary["fit_samples_per_s"] > 0 and summary["baseline_val_accuracy"] > 0.25
    report = tmp_path / "profile.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedbench.cli",
            "profile",
            "keyed",
            "--backend",
            backend,
            "--samples",
            "128",
            "--epochs",
            "2",
            "--grid-workers",
            "2",
            "--json",
            str(report),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    settings = json.loads(report.read_text())["settings"]
    assert len(settings) == 2 and all(s["error"] is None for s in settings)
    assert all(s["determinism"]["missing"] == 0 and s["determinism"]["reproducible"] for s in settings)
