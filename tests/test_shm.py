"""``shm``: keyed's stream bit for bit under every worker count and start method,
and clean-up on every path (no process survives, nothing left in /dev/shm)."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from feedbench.core.data import make_source
from feedbench.core.errors import GeneratorFailed
from feedbench.core.spec import Built
from feedbench.core.workloads import Workload
from feedbench.fit import driver
from feedbench.generators import Spec, build
from feedbench.generators.shm import ShmDataset
from feedbench.generators.shm_worker import SEGMENT_PREFIX, SHM_DIR
from support.planted import FailsOnThirdBatch, SlowWork

pytestmark = [pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["fork", "forkserver", "spawn"]


def segments():
    """Ours, and the named semaphores of multiprocessing queues (spawn and forkserver name them)."""
    return sorted(name for name in os.listdir(SHM_DIR) if name.startswith((SEGMENT_PREFIX, "sem.mp-")))


@pytest.fixture
def clean(no_stray_workers, request):
    # /dev/shm is the whole machine's: under xdist only a test marked alone has it to itself
    assert request.node.get_closest_marker("alone"), f"{request.node.name} compares /dev/shm: mark it alone"
    before = segments()
    yield
    assert segments() == before, "shared-memory segments left behind"


def _stream(impl, epochs=3, **settings):
    spec = Spec(impl, n_samples=100, batch_size=16, seed=7, shuffle=True, **settings)
    return driver.run(build(spec), epochs=epochs)


@pytest.fixture(scope="module")
def keyed_stream():
    return _stream("keyed")


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_stream_is_keyeds_bit_for_bit(method, workers, keyed_stream, monkeypatch, clean):
    monkeypatch.setenv("FEEDBENCH_SHM_START_METHOD", method)
    stream = _stream("shm", workers=workers, use_multiprocessing=True)
    assert [(b.epoch, b.step) for b in stream] == [(b.epoch, b.step) for b in keyed_stream]
    for mine, theirs in zip(stream, keyed_stream):
        assert mine.x.tobytes() == theirs.x.tobytes() and np.array_equal(mine.y, theirs.y), (mine.epoch, mine.step)


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_without_multiprocessing_it_is_keyed_on_keras_threads(keyed_stream, clean):
    stream = _stream("shm", workers=2, use_multiprocessing=False)
    assert all(a.x.tobytes() == b.x.tobytes() for a, b in zip(stream, keyed_stream))


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_the_pool_persists_across_epochs_and_ends_with_the_run(no_stray_workers, clean):
    built = build(Spec("shm", n_samples=256, batch_size=16, workers=2, use_multiprocessing=True))
    seen = set()
    for _batch in driver.drive(built, epochs=3):
        seen |= set(built.dataset.worker_pids)
    assert len(seen) == 2  # the same two processes in every epoch (Keras would fork 2 per epoch)
    assert built.dataset.worker_pids == []


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_no_segment_name_stays_in_dev_shm_while_it_runs(clean):
    source = make_source("small", 64, 0)
    with ShmDataset(source, 16, 0, False, Workload("copy"), workers=2, use_multiprocessing=True) as dataset:
        dataset[0]
        assert len(dataset.worker_pids) == 2
        assert segments() == []


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_exception_in_a_worker_names_the_batch_and_carries_its_traceback(method, clean):
    source = make_source("small", 256, 0)
    dataset = ShmDataset(
        source, 16, 0, False, FailsOnThirdBatch(), workers=1, use_multiprocessing=True, start_method=method
    )
    with pytest.raises(
        GeneratorFailed,
        match=r"^shm: worker 0 raised at batch \d+ of epoch 0: ValueError: planted "
        r"failure in a worker",
    ) as caught:
        for index in range(len(dataset)):
            dataset[index]
    assert "planted.py" in caught.value.worker_traceback and "in apply" in caught.value.worker_traceback
    assert dataset.worker_pids == []  # the failure closed the pool


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_a_worker_killed_by_a_signal_is_reported_within_seconds(clean):
    source = make_source("small", 512, 0)
    dataset = ShmDataset(source, 16, 0, False, SlowWork(), workers=2, use_multiprocessing=True)
    dataset[0]
    os.kill(dataset.worker_pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(
        GeneratorFailed,
        match=r"^shm: worker 1 \(pid \d+\) was killed by SIGKILL while producing "
        r"batch \d+ of epoch 0$",
    ):
        for index in range(1, len(dataset)):
            dataset[index]
    assert time.monotonic() - start < 5
    assert dataset.worker_pids == []


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_the_consumer_stopping_early_leaves_nothing(clean):
    built = build(Spec("shm", n_samples=2000, batch_size=16, workers=2, use_multiprocessing=True))
    with contextlib.closing(driver.drive(built, epochs=3)) as batches:
        for i, _ in enumerate(batches):
            if i == 5:
                break


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_the_time_limit_ends_a_run_waiting_on_a_worker(clean):
    source = make_source("small", 64, 0)
    dataset = ShmDataset(source, 16, 0, False, SlowWork(), workers=1, use_multiprocessing=True)
    built = Built(Spec("shm", n_samples=64, batch_size=16), "pydataset", dataset, source)
    from feedbench.core.errors import DriveTimeout

    with pytest.raises(DriveTimeout):
        driver.run(built, epochs=50, timeout_s=2)


PARENT = textwrap.dedent(
    """
    import sys, time
    from feedbench.core.data import make_source
    from feedbench.generators.shm import ShmDataset
    from feedbench.core.workloads import Workload

    if __name__ == "__main__":
        dataset = ShmDataset(make_source("small", 256, 0), 16, 0, False, Workload("copy"), workers=2,
                             use_multiprocessing=True, start_method=sys.argv[1])
        dataset[0]
        print(*dataset.worker_pids, flush=True)
        time.sleep(600)
    """
)


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
@pytest.mark.parametrize(
    "how",
    [signal.SIGKILL, signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.long)],
    ids=["SIGKILL", "SIGINT", "SIGTERM"],
)
@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.long)])
def test_a_parent_that_is_interrupted_or_killed_takes_its_workers_along(how, method, tmp_path, clean):
    before = segments()
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), method],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # however the tests were launched
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        parent.send_signal(how)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.1)
        while segments() != before:  # multiprocessing's resource tracker unlinks what a killed parent left
            assert time.monotonic() < deadline, f"left in {SHM_DIR}: {sorted(set(segments()) - set(before))}"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.alone  # compares /dev/shm before and after (the clean fixture)
def test_the_ring_the_memory_target_counts_is_the_ring_shm_allocates(clean):
    from feedbench.run.shm_targets import COPY, ring_bytes

    spec = Spec(
        "shm", size=COPY.size, n_samples=64, batch_size=COPY.batch_size, workers=COPY.workers, use_multiprocessing=True
    )
    built = build(spec)
    try:
        built.dataset[0]
        pool = built.dataset._box[0]
        assert pool.ring.slots * pool.ring.slot_bytes == ring_bytes(spec)
    finally:
        built.close()


@pytest.mark.long  # the long tier: a whole profile of shm
def test_profile_measures_shm_like_any_implementation(tmp_path):
    import json

    report = tmp_path / "shm.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedbench.cli",
            "profile",
            "shm",
            "--samples",
            "256",
            "--epochs",
            "2",
            "--grid-workers",
            "2",
            "--shuffle",
            "--json",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads(report.read_text())["settings"]
    assert len(settings) == 2  # 2 threads, 2 processes
    for record in settings:
        d = record["determinism"]
        assert d["missing"] == 0 and d["duplicated"] == 0 and d["reproducible"] and d["matches_serial"], record
    processes = [r for r in settings if r["use_multiprocessing"]]
    assert [r["memory"]["workers_seen"] for r in processes] == [2]  # one pool for all epochs, not one per epoch


def test_fit_shuffle_does_not_change_what_shm_delivers(no_stray_workers):
    """fit(shuffle=True), Keras's default, permutes the indices it asks for; shm serves its own order."""
    from dataclasses import replace

    from feedbench.fit import tap

    spec = Spec("shm", n_samples=160, batch_size=16, workers=2, use_multiprocessing=True, shuffle=True)
    shuffled_by_fit = build(spec)
    shuffled_by_fit.fit_shuffle = True
    reference = build(replace(spec, impl="keyed", workers=1, use_multiprocessing=False))
    assert reference.fit_shuffle is False
    got = tap.fit_stream(shuffled_by_fit, epochs=2, timeout_s=120)
    expected = tap.fit_stream(reference, epochs=2, timeout_s=120)
    assert got.epochs == expected.epochs and len(got.epochs[0]) == 160


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_fit_shuffle_does_not_change_what_shm_delivers_on_other_backends(backend):
    """The same check as above on the other installed backends (each in a fresh process)."""
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    script = textwrap.dedent(
        """
        from dataclasses import replace
        from feedbench.fit import tap
        from feedbench.generators import Spec, build
        spec = Spec("shm", n_samples=160, batch_size=16, workers=2, use_multiprocessing=True, shuffle=True)
        shuffled_by_fit = build(spec)
        shuffled_by_fit.fit_shuffle = True
        reference = build(replace(spec, impl="keyed", workers=1, use_multiprocessing=False))
        got = tap.fit_stream(shuffled_by_fit, epochs=2, timeout_s=120)
        expected = tap.fit_stream(reference, epochs=2, timeout_s=120)
        assert got.epochs == expected.epochs and len(got.epochs[0]) == 160, (got.epochs, expected.epochs)
        print("same stream")
        """
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "same stream" in proc.stdout, proc.stderr[-3000:]
