"""The driver: fit's order, clear errors for bad generators, time limits, clean-up."""

import contextlib
import os
import select
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import psutil
import pytest

from feedbench.core import procs
from feedbench.core.errors import BadDataset, DriveTimeout, GeneratorFailed
from feedbench.core.spec import Built
from feedbench.fit import driver
from feedbench.generators import Spec, build
from support.planted import Recorder

SETTINGS = [(1, False), (2, False), (2, True)]
IDS = ["serial", "threads", "processes"]


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_generator_that_raises_is_reported_with_its_error(workers, multiprocessing, no_stray_workers):
    built = build(
        Spec(
            "support.planted:raising",
            n_samples=160,
            batch_size=16,
            workers=workers,
            use_multiprocessing=multiprocessing,
        )
    )
    with pytest.raises(GeneratorFailed, match=r"raised at epoch 0 step \d: ValueError: planted failure at index 3$"):
        driver.run(built, epochs=2)


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_generator_that_hangs_ends_at_the_time_limit(workers, multiprocessing, no_stray_workers):
    built = build(
        Spec(
            "support.planted:hanging",
            n_samples=160,
            batch_size=16,
            workers=workers,
            use_multiprocessing=multiprocessing,
        )
    )
    start = time.monotonic()
    with pytest.raises(DriveTimeout, match="exceeded its time limit of 2 s"):
        driver.run(built, epochs=2, timeout_s=2)
    assert time.monotonic() - start < 12


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_batches_that_change_shape_are_refused(workers, multiprocessing, no_stray_workers):
    built = build(
        Spec(
            "support.planted:shape_shifting",
            n_samples=160,
            batch_size=16,
            workers=workers,
            use_multiprocessing=multiprocessing,
        )
    )
    with pytest.raises(
        BadDataset, match=r"batches change shape at epoch 0 step 3: .*\(16, 28, 32, 3\).*\(None, 32, 32, 3\)"
    ):
        driver.run(built, epochs=1)


def test_shape_check_of_the_driver_itself():
    check = driver._ShapeCheck("mine")
    check((np.zeros((4, 8, 8, 3), np.float32), np.zeros((4,), np.int64), None), "epoch 0 step 0")
    check((np.zeros((2, 8, 8, 3), np.float32), np.zeros((2,), np.int64), None), "epoch 0 step 1")  # short batch is fine
    with pytest.raises(
        BadDataset, match=r"step 2 has x \(batch, 8, 8, 1\) float32.*expected x \(batch, 8, 8, 3\) float32"
    ):
        check((np.zeros((4, 8, 8, 1), np.float32), np.zeros((4,), np.int64), None), "epoch 0 step 2")


@pytest.mark.parametrize("workers,multiprocessing", SETTINGS, ids=IDS)
def test_consumer_stopping_early_leaves_no_worker(workers, multiprocessing, no_stray_workers):
    built = build(Spec("keyed", n_samples=2000, batch_size=16, workers=workers, use_multiprocessing=multiprocessing))
    seen_workers = 0
    with contextlib.closing(driver.drive(built, epochs=3)) as batches:
        for i, _ in enumerate(batches):
            seen_workers = max(seen_workers, len(procs.descendant_pids() - no_stray_workers))
            if i == 5:
                break
    assert seen_workers == (2 if multiprocessing else 0)


STUCK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, keras, numpy as np
    from feedbench.core.data import make_source
    from feedbench.core.spec import Built, Spec
    from feedbench.fit import driver, supervise

    class Stuck(keras.utils.PyDataset):
        def __len__(self): return 4
        def __getitem__(self, i):
            if i == 2:
                time.sleep(3600)
            return np.zeros((2, 4), np.float32), np.zeros((2,), np.int64)

    if sys.argv[1] == "owner":  # a process that owns its interpreter, as the CLI and measuring children do
        supervise.on_stuck(lambda message: (print(message, file=sys.stderr, flush=True), os._exit(124)))
    print("pid", os.getpid(), flush=True)
    driver.run(Built(Spec("stuck"), "pydataset", Stuck(), make_source(n=8)), epochs=1, timeout_s=1)
    """
)


def test_a_stuck_native_wait_ends_a_process_that_owns_its_interpreter():
    """A producer that never returns to Python: its owner's handler ends the process, naming the thread."""
    env = dict(os.environ, FEEDBENCH_STUCK_GRACE_S="2")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", STUCK_SCRIPT, "owner"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 124, proc.stderr[-2000:]
    assert "run exceeded its time limit of 1 s" in proc.stderr
    assert "stuck in native code" in proc.stderr
    assert time.monotonic() - start < 60
    pid = int(proc.stdout.split()[1])
    assert not psutil.pid_exists(pid)


def test_a_stuck_native_wait_never_ends_a_library_callers_interpreter():
    """Without an owner's handler the library reports the stuck thread and leaves the process alive."""
    env = dict(os.environ, FEEDBENCH_STUCK_GRACE_S="2")
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_SCRIPT, "library"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        said = ""
        while "waiting for it to return" not in said and time.monotonic() < deadline:
            assert proc.poll() is None, said[-2000:]
            if select.select([proc.stderr], [], [], 1.0)[0]:
                said += os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
        assert "waiting for it to return" in said and "stuck in native code" in said
        time.sleep(1.0)
        assert proc.poll() is None  # the interpreter is still the caller's
    finally:
        proc.kill()
        proc.wait()


def test_driver_calls_the_dataset_in_exactly_fits_order():
    fit_events, drive_events = [], []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(Recorder(fit_events), epochs=2, shuffle=False, verbose=0)

    from feedbench.core.data import make_source

    built = Built(Spec("recorder"), "pydataset", Recorder(drive_events), make_source(n=6))
    batches = driver.run(built, epochs=2)
    assert drive_events == fit_events
    assert fit_events.count("end") == 3  # one extra on_epoch_end before the first epoch
    assert [b.x[0, 0] for b in batches] == [0, 1, 2, 0, 1, 2]


def test_epochs_must_be_positive():
    with pytest.raises(ValueError, match="epochs=0 given; expected 1 or more"):
        list(driver.drive(build(Spec("keyed", n_samples=16)), epochs=0))
