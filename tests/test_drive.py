"""The driver: fit's order, clear errors for bad generators, time limits, clean-up."""

import contextlib
import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import psutil
import pytest

from feedbench import drive, procs
from feedbench.errors import BadDataset, DriveTimeout, GeneratorFailed
from feedbench.generators import Spec, build
from planted import Recorder

SETTINGS = [(1, False), (2, False), (2, True)]
IDS = ["serial", "threads", "processes"]


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_generator_that_raises_is_reported_with_its_error(workers, multiprocessing, no_stray_workers):
    built = build(Spec("planted:raising", n_samples=160, batch_size=16, workers=workers, use_multiprocessing=multiprocessing))
    with pytest.raises(GeneratorFailed, match=r"raised at epoch 0 step \d: ValueError: planted failure at index 3$"):
        drive.run(built, epochs=2)


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_generator_that_hangs_ends_at_the_time_limit(workers, multiprocessing, no_stray_workers):
    built = build(Spec("planted:hanging", n_samples=160, batch_size=16, workers=workers, use_multiprocessing=multiprocessing))
    start = time.monotonic()
    with pytest.raises(DriveTimeout, match="exceeded its time limit of 2 s"):
        drive.run(built, epochs=2, timeout_s=2)
    assert time.monotonic() - start < 12


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_batches_that_change_shape_are_refused(workers, multiprocessing, no_stray_workers):
    built = build(Spec("planted:shape_shifting", n_samples=160, batch_size=16, workers=workers, use_multiprocessing=multiprocessing))
    with pytest.raises(BadDataset, match=r"batches change shape at epoch 0 step 3: .*\(16, 28, 32, 3\).*\(None, 32, 32, 3\)"):
        drive.run(built, epochs=1)


def test_shape_check_of_the_driver_itself():
    check = drive._ShapeCheck("mine")
    check(np.zeros((4, 8, 8, 3), np.float32), np.zeros((4,), np.int64), (0, 0))
    check(np.zeros((2, 8, 8, 3), np.float32), np.zeros((2,), np.int64), (0, 1))  # short batch is fine
    with pytest.raises(BadDataset, match=r"step 2 has x \(batch, 8, 8, 1\) float32.*expected x \(batch, 8, 8, 3\) float32"):
        check(np.zeros((4, 8, 8, 1), np.float32), np.zeros((4,), np.int64), (0, 2))


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_consumer_stopping_early_leaves_no_worker(workers, multiprocessing, no_stray_workers):
    built = build(Spec("keyed", n_samples=2000, batch_size=16, workers=workers, use_multiprocessing=multiprocessing))
    seen_workers = 0
    with contextlib.closing(drive.drive(built, epochs=3)) as batches:
        for i, _ in enumerate(batches):
            seen_workers = max(seen_workers, len(procs.descendant_pids() - no_stray_workers))
            if i == 5:
                break
    assert seen_workers == (2 if multiprocessing else 0)


def test_the_time_limit_also_ends_a_stuck_native_wait():
    """A producer that never returns to Python: the process ends with 124, no worker left."""
    script = textwrap.dedent(
        """
        import os, time, keras, numpy as np
        from feedbench import drive
        from feedbench.generators import Spec, Built
        from feedbench.data import make_source

        class Stuck(keras.utils.PyDataset):
            def __len__(self): return 4
            def __getitem__(self, i):
                if i == 2:
                    time.sleep(3600)
                return np.zeros((2, 4), np.float32), np.zeros((2,), np.int64)

        source = make_source(n=8)
        built = Built(Spec("stuck"), "pydataset", Stuck(), source)
        print("pid", os.getpid(), flush=True)
        drive.run(built, epochs=1, timeout_s=1)
        """
    )
    env = dict(os.environ, FEEDBENCH_STUCK_GRACE_S="2")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 124, proc.stderr[-2000:]
    assert "run exceeded its time limit of 1 s" in proc.stderr
    assert time.monotonic() - start < 60
    pid = int(proc.stdout.split()[1])
    assert not psutil.pid_exists(pid)


def test_driver_calls_the_dataset_in_exactly_fits_order():
    fit_events, drive_events = [], []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(Recorder(fit_events), epochs=2, shuffle=False, verbose=0)

    from feedbench.data import make_source

    built = drive.Built(Spec("recorder"), "pydataset", Recorder(drive_events), make_source(n=6))
    batches = drive.run(built, epochs=2)
    assert drive_events == fit_events
    assert fit_events.count("end") == 3  # one extra on_epoch_end before the first epoch
    assert [b.x[0, 0] for b in batches] == [0, 1, 2, 0, 1, 2]


def test_epochs_must_be_positive():
    with pytest.raises(ValueError, match="epochs=0 given; expected 1 or more"):
        list(drive.drive(build(Spec("keyed", n_samples=16)), epochs=0))
