"""Faults injected as a user's generator or a user's terminal would cause them.

Every exit path ends within its time limit plus a few seconds, with one line that says what
happened, no process left (psutil), nothing new in /dev/shm and no temporary folder left. The
tests that race a signal against a run do so beside a CPU-heavy process (``cpu_load``), as on
a busy machine.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from feedbench.core.errors import BadDataset, FactoryFailed, GeneratorFailed
from feedbench.fit import driver
from feedbench.generators import Spec, build

# The long tier as a whole (CI time): every exit path under a CPU hog; `pytest -m long` runs it.
pytestmark = [pytest.mark.slow, pytest.mark.long]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
SHM = "/dev/shm"


@pytest.fixture
def cpu_load():
    """A CPU-heavy process beside the test, as on a busy machine."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield burner
    burner.kill()
    burner.wait()


# What a run of ours can leave in /dev/shm: shm's segments, multiprocessing's named semaphores and
# shared memory. Other programs on a shared machine come and go there too; they are not ours to count.
OURS = ("feedbench-shm-", "sem.mp-", "psm_", "mp-")


def _shm_entries() -> set[str]:
    names = os.listdir(SHM) if os.path.isdir(SHM) else []
    return {name for name in names if name.startswith(OURS)}


def _temp_entries() -> set[str]:
    """What is in the temporary folder: the test run's own (conftest), so anything new is ours.
    pytest's folders for tmp_path appear there on first use."""
    return {name for name in os.listdir(tempfile.gettempdir()) if not name.startswith("pytest-of-")}


def _cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "feedbench.cli", *args],
        cwd=ROOT,
        env=env or os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint():
    """In the child: SIGINT as a terminal delivers it. A shell without job control starts background
    commands with SIGINT ignored, and Python then never raises KeyboardInterrupt: the tests must not
    depend on how they were launched."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout_s} s")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""  # gone, or a zombie: as good as gone


def _measuring_tree(proc: subprocess.Popen, settle_s: float) -> list[psutil.Process]:
    """The measuring child ``proc`` started and the processes under it, once it has had
    ``settle_s`` to start its own workers."""
    child = _wait_for(
        lambda: [p for p in _tree(proc.pid) if "feedbench.run.sweep" in _command(p)], 120, "measuring child"
    )[0]
    time.sleep(settle_s)
    return [child, *_tree(child.pid)]


def _stderr_within(proc: subprocess.Popen, timeout_s: float) -> str:
    """The process's stderr once it ends; if it runs on, kill it and fail with what it had said (a bare
    TimeoutExpired would lose the very lines that tell where it hung)."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        err = proc.communicate()[1]
        raise AssertionError(f"still running {timeout_s} s after the signal; its stderr: {err[-3000:]}") from None


def _assert_gone(processes, timeout_s: float = 10):
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"


# --------------------------------------------------------------------------- signals to the command line


@pytest.mark.parametrize(
    "impl,signum,status,said",
    [
        ("keyed", signal.SIGINT, 130, "feedbench: interrupted"),
        ("shm", signal.SIGINT, 130, "feedbench: interrupted"),
        pytest.param("shm", signal.SIGTERM, 143, "feedbench: stopped by SIGTERM", marks=pytest.mark.long),
        pytest.param("keyed", signal.SIGHUP, 129, "feedbench: stopped by SIGHUP", marks=pytest.mark.long),
    ],
)
@pytest.mark.alone  # compares /dev/shm
def test_a_signal_ends_drive_with_one_line_and_nothing_left(impl, signum, status, said, cpu_load):
    shm_before = _shm_entries()
    proc = _cli("drive", impl, "--workers", "2", "--multiprocessing", "--epochs", "10000", "--samples", "256")
    try:
        _wait_for(lambda: len(_tree(proc.pid)) >= 2, 120, "worker processes")
        workers = _tree(proc.pid)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signum)
        err = _stderr_within(proc, 30)
        took = time.monotonic() - sent
        assert took < 15, f"ended {took:.1f} s after the signal: {err[-2000:]}"
    finally:
        proc.kill()
    assert proc.returncode == status, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(said), err[-2000:]
    _assert_gone(workers)
    assert _shm_entries() - shm_before == set()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_profile_takes_its_measuring_child_along(signum, cpu_load):
    folders_before = _temp_entries()
    proc = _cli("profile", "keyed", "--samples", "128", "--epochs", "50", "--grid-workers", "1", "2")
    try:
        tree = _measuring_tree(proc, settle_s=2.0)
        proc.send_signal(signum)
        _stderr_within(proc, 30)
    finally:
        proc.kill()
    assert proc.returncode in (130, 143, 129)
    _assert_gone(tree)
    assert _temp_entries() - folders_before == set()


def test_a_measuring_child_dies_with_its_parent(cpu_load):
    """SIGKILL to profile gives it no chance to clean up: the child's parent-death signal ends the
    child, nothing of the exchange between them was left on disk, and the temporary folder the
    killed command had made for itself and its child is removed by the next command."""
    folders_before = _temp_entries()
    proc = _cli("profile", "keyed", "--samples", "128", "--epochs", "50", "--grid-workers", "1")
    try:
        tree = _measuring_tree(proc, settle_s=1.0)
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    _assert_gone(tree, timeout_s=10)
    left = _temp_entries() - folders_before
    assert left and all(name.startswith(f"feedbench-tmp-{proc.pid}-") for name in left), left
    next_command = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert next_command.returncode == 0, next_command.stderr[-2000:]
    assert _temp_entries() - folders_before == set()


def test_what_the_code_under_test_writes_to_the_temporary_folder_goes_with_the_call():
    """TensorFlow's AutoGraph removes its generated files only at a normal interpreter exit, and the
    command line ends with os._exit (pool workers never exit normally either). Before the command's
    private temporary folder, each such run left a file in /tmp. (A measuring child: below.)"""
    before = _temp_entries()
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", "support.faulty:converts_a_function", "--workers", "2"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _temp_entries() - before == set()


@pytest.mark.parametrize(
    "signum,status,said,workers",
    [
        (signal.SIGTERM, 143, "stopped by SIGTERM", []),
        pytest.param(signal.SIGINT, 130, "interrupted", [], marks=pytest.mark.long),
        (signal.SIGTERM, 143, "stopped by SIGTERM", ["--workers", "2", "--multiprocessing"]),
    ],
)
def test_a_stop_signal_ends_drive_while_its_main_thread_waits_in_native_code(
    signum, status, said, workers, tmp_path, cpu_load
):
    """The main thread waits inside TensorFlow's iterator for a batch that never comes: Python
    cannot run the signal's handler there. Before the stop guard, drive took the signal only at
    its time limit (300 s here)."""
    before = _temp_entries()
    mark = str(tmp_path / "stuck")
    env = dict(os.environ, PYTHONPATH=TESTS, FAULTY_STUCK_MARK=mark)
    proc = _cli("drive", "support.faulty:sleeps_in_native_code", *workers, "--epochs", "2", env=env)
    try:
        _wait_for(lambda: os.path.exists(mark), 120, "the generator's stuck batch")
        time.sleep(1.0)
        below = _tree(proc.pid)
        assert len(below) >= (2 if workers else 0), below
        sent = time.monotonic()
        proc.send_signal(signum)
        err = _stderr_within(proc, 120)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert took < 60, f"ended {took:.0f} s after the signal; the run's limit is 300 s"
    assert proc.returncode == status, err[-2000:]
    assert err.strip().splitlines()[-1] == f"feedbench: {said}; the run's workers were stopped", err[-2000:]
    _assert_gone(below)
    assert _temp_entries() - before == set()


# --------------------------------------------------------------------------- workers that die


@pytest.mark.parametrize(
    "factory,processes,said",
    [
        ("support.faulty:worker_exits", True, r"a Keras worker process \(pid \d+\) exited with status 3"),
        ("support.faulty:worker_killed", True, r"a Keras worker process \(pid \d+\) was killed by SIGKILL"),
        ("support.faulty:worker_aborts", True, r"a Keras worker process \(pid \d+\) was killed by SIGABRT"),
        ("support.faulty:worker_deadlocks", True, r"no progress for 2 s: Keras's worker processes \(pids \d+, \d+\)"),
        (
            "support.faulty:worker_deadlocks",
            False,
            r"no progress for 2 s: Keras's worker threads \(thread ids \d+, \d+\)",
        ),
    ],
)
def test_a_keras_worker_that_dies_or_stalls_is_named_at_once(factory, processes, said, monkeypatch, no_stray_workers):
    import faulty

    monkeypatch.setenv("FEEDBENCH_STALL_S", "2")  # as the benchmark suite sets it (5 s there)
    faulty.RELEASE_STALLED_THREADS.clear()
    built = build(Spec(factory, n_samples=160, batch_size=16, workers=2, use_multiprocessing=processes))
    started = time.monotonic()
    try:
        with pytest.raises(GeneratorFailed, match=said):
            driver.run(built, epochs=2, timeout_s=120)
        assert time.monotonic() - started < 30  # named when it happens, not at the 120 s limit
    finally:
        faulty.RELEASE_STALLED_THREADS.set()  # worker threads cannot be killed: let them return


@pytest.mark.parametrize("processes", [True, pytest.param(False, marks=pytest.mark.long)])
def test_keras_workers_that_compute_longer_than_the_stall_window_are_not_a_stall(
    processes, monkeypatch, no_stray_workers
):

    monkeypatch.setenv("FEEDBENCH_STALL_S", "2")
    built = build(
        Spec(
            "support.faulty:worker_computes_for_3_s",
            n_samples=96,
            batch_size=16,
            workers=2,
            use_multiprocessing=processes,
        )
    )
    driver.run(built, epochs=1, timeout_s=120)  # 3 batches of 3 CPU seconds each, no failure


# --------------------------------------------------------------------------- shm under every start method


@pytest.mark.parametrize(
    "method",
    ["fork", pytest.param("forkserver", marks=pytest.mark.long), pytest.param("spawn", marks=pytest.mark.long)],
)
def test_shm_serves_an_idle_consumer_and_its_workers_are_counted(method, monkeypatch, no_stray_workers):
    from feedbench.measure.memory import measure_memory

    monkeypatch.setenv("FEEDBENCH_SHM_START_METHOD", method)
    dataset = build(Spec("shm", n_samples=128, batch_size=16, workers=2, use_multiprocessing=True)).dataset
    try:
        first = dataset[0]
        time.sleep(2.5)  # longer than the workers' parent poll: they must still be there
        later = dataset[5]
        assert len(first[0]) == 16 and len(later[0]) == 16
    finally:
        dataset.close()
    memory = measure_memory(Spec("shm", n_samples=128, batch_size=16, workers=2, use_multiprocessing=True), epochs=2)
    assert memory.workers_seen >= 2 and memory.peak_workers_uss_bytes > 0


_START_SHM = """
import sys, time
from feedbench.generators import Spec, build
print("building", flush=True)
started = time.monotonic()
dataset = build(Spec("shm", n_samples=2048, batch_size=64, workers=2, use_multiprocessing=True)).dataset
dataset[0]
print("started", time.monotonic() - started, flush=True)
time.sleep(60)
"""


def _start_shm_owner(method: str) -> subprocess.Popen:
    env = dict(os.environ, FEEDBENCH_SHM_START_METHOD=method)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", _START_SHM], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "building"
    return proc


@pytest.mark.alone  # compares /dev/shm
@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.long)])
def test_a_kill_inside_shm_start_up_leaves_nothing_once_the_next_pool_starts(method, cpu_load):
    """SIGKILL at points spread over shm's start-up: what the dead owner had in /dev/shm (its
    segments; under spawn, multiprocessing's named semaphores) is gone once the next pool has
    started, and none of its workers is left."""
    before = _shm_entries()
    baseline = _start_shm_owner(method)  # how long start-up takes here, now
    start_up_s = float(baseline.stdout.readline().split()[1])
    baseline.kill()
    baseline.wait()
    for fraction in (0.05, 0.3, 0.6, 0.9):
        owner = _start_shm_owner(method)
        time.sleep(start_up_s * fraction)
        tree = _tree(owner.pid)
        owner.kill()
        owner.wait()
        _assert_gone([p for p in tree if "resource_tracker" not in _command(p)])
    nxt = _start_shm_owner(method)  # the next pool's start reclaims what a killed owner stranded
    assert nxt.stdout.readline().startswith("started")
    nxt.terminate()
    nxt.wait()
    _wait_for(lambda: not (_shm_entries() - before), 15, "clean /dev/shm")


@pytest.mark.alone  # compares /dev/shm
@pytest.mark.long  # the long tier: CI runs the time limit under fork
def test_an_shm_setting_at_its_time_limit_under_spawn_leaves_nothing(cpu_load):
    """The setting's process group is killed at its limit; multiprocessing's resource tracker
    is killed last, after it had the chance to unlink the pool's named semaphores."""
    shm_before, folders_before = _shm_entries(), _temp_entries()
    env = dict(os.environ, FEEDBENCH_SHM_START_METHOD="spawn")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedbench.cli",
            "profile",
            "shm",
            "--samples",
            "2048",
            "--epochs",
            "100000",
            "--grid-workers",
            "2",
            "--grid-multiprocessing",
            "on",
            "--timeout",
            "8",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "time limit" in proc.stdout + proc.stderr
    assert elapsed < 8 + 120  # the limit plus start-up of the child and its interpreter
    _wait_for(lambda: not (_shm_entries() - shm_before), 15, "clean /dev/shm")
    assert _temp_entries() - folders_before == set()


# --------------------------------------------------------------------------- bad input, one line


@pytest.mark.parametrize(
    "factory,error,said",
    [
        (
            "support.faulty:factory_raises",
            FactoryFailed,
            r"factory support.faulty:factory_raises of .* raised RuntimeError: the factory's",
        ),
        ("support.faulty:len_raises", BadDataset, r"len\(\) of its PyDataset raised KeyError"),
        ("support.faulty:len_float", BadDataset, r"len\(\) of its PyDataset raised TypeError"),
    ],
)
def test_a_dataset_that_cannot_be_built_is_one_line(factory, error, said):
    with pytest.raises(error, match=said):
        build(Spec(factory, n_samples=64, batch_size=16))


@pytest.mark.parametrize(
    "factory,said",
    [
        ("support.faulty:xy_mismatch", r"parts of different lengths \(x 16, y 15 rows\)"),
        ("support.faulty:empty_batch", r"the batch at epoch 0 step 3 has 0 samples"),
    ],
)
def test_batches_fit_would_choke_on_are_refused_in_one_line(factory, said, no_stray_workers):
    with pytest.raises(BadDataset, match=said):
        driver.run(build(Spec(factory, n_samples=96, batch_size=16)), epochs=1)


@pytest.mark.parametrize(
    "factory", ["support.faulty:factory_raises", "support.faulty:len_raises", "support.faulty:xy_mismatch"]
)
def test_drive_says_it_in_one_line_with_status_2(factory):
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", factory, "--samples", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("feedbench")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_an_unusable_cache_folder_is_one_line_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = dict(os.environ, FEEDBENCH_CACHE=str(blocker / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", "keyed", "--workload", "io", "--samples", "64"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "source cache" in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr


def _full_disk():
    """In the child: files may not grow past 64 KiB (EFBIG, as a full disk gives ENOSPC)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_cache_write_that_fails_is_one_line_and_leaves_no_partial_file(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, FEEDBENCH_CACHE=str(cache), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", "keyed", "--workload", "io", "--samples", "512"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_full_disk,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "source cache" in last and str(cache) in last and "(None)" not in last and "Traceback" not in proc.stderr, (
        proc.stderr[-2000:]
    )
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("*.npy"))


def _cli_with_helper_mark(*args, timeout: float) -> tuple[subprocess.CompletedProcess, str]:
    """Run the command line on a faulty generator whose helper processes carry a unique mark."""
    mark = f"feedbench-test-helper-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, FAULTY_MARK=mark, PYTHONPATH=os.path.join(ROOT, "tests"))
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", *args, "--samples", "160", "--batch-size", "16"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, mark


def _marked_left(mark: str) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if mark in " ".join(p.info["cmdline"] or [])]


def _warnings(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("feedbench: warning:")]


@pytest.mark.parametrize(
    "factory,leaves",
    [("support.faulty:worker_leaves_a_daemon", True), ("support.faulty:worker_waits_for_its_helper", False)],
)
def test_a_process_a_worker_leaves_running_is_stopped_and_reported(factory, leaves):
    proc, mark = _cli_with_helper_mark(
        "drive", factory, "--workers", "2", "--multiprocessing", "--epochs", "2", timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = _warnings(proc)
    if leaves:
        assert len(warned) == 1 and "left 2 process(es) running" in warned[0], proc.stderr[-2000:]  # one per epoch
        assert warned[0].count(mark) == 2
    else:
        assert warned == [], proc.stderr[-2000:]
    assert _marked_left(mark) == []


@pytest.mark.long  # the long tier: a whole profile
def test_profile_passes_on_what_its_measuring_child_warned():
    proc, mark = _cli_with_helper_mark(
        "profile",
        "support.faulty:worker_leaves_a_daemon",
        "--epochs",
        "1",
        "--grid-workers",
        "2",
        "--grid-multiprocessing",
        "on",
        timeout=600,
    )
    warned = _warnings(proc)
    assert warned and all("left" in line and mark in line for line in warned), proc.stderr[-2000:]
    assert _marked_left(mark) == []


CLEAN_UP_HANGS = """
import os, sys, time
from feedbench.fit import supervise

supervise.on_stuck(lambda message: (print(message, file=sys.stderr, flush=True), os._exit(124)))
with supervise.supervised("closing-hangs", timeout_s=1, closers=[lambda: time.sleep(3600)]):
    if sys.argv[1] == "at-the-limit":
        time.sleep(3600)  # the limit ends the block, then stopping it hangs
"""


@pytest.mark.parametrize("when", ["after-the-end", pytest.param("at-the-limit", marks=pytest.mark.long)])
def test_a_clean_up_that_hangs_still_ends_at_the_limit_plus_the_grace(when, cpu_load):
    """Stopping a loader can hang too (a backend's iterator, a worker join): the limit holds there."""
    env = dict(os.environ, FEEDBENCH_STUCK_GRACE_S="2")
    proc = subprocess.run(
        [sys.executable, "-c", CLEAN_UP_HANGS, when], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 124, proc.stderr[-2000:]
    assert "closing-hangs: run exceeded its time limit of 1 s, and stopping its workers did not return" in proc.stderr


def test_a_child_that_said_everything_but_does_not_exit_is_ended_without_waiting_for_its_limit():
    from feedbench.core.child import EXIT_GRACE_S, run_child

    limit = 120.0
    folders_before = _temp_entries()
    started = time.monotonic()
    results = run_child("support.child_hangs_at_exit", {"done_then_hang": True}, limit)
    assert results == [{"said": "everything"}]
    # Its limit is what would end it otherwise; the exit grace (plus start-up) is far below it.
    assert time.monotonic() - started < limit / 2, f"took {time.monotonic() - started:.0f} s (grace {EXIT_GRACE_S} s)"
    assert not _temp_entries() - folders_before  # nor its temporary file: its private folder went with it


def test_a_child_that_said_everything_ends_without_its_interpreters_teardown(tmp_path):
    """TensorFlow's teardown took 0.5-1.7 s per measuring process, measuring nothing."""
    from feedbench.core.child import run_child

    marker = tmp_path / "teardown-ran"
    assert run_child("support.child_hangs_at_exit", {"atexit_marker": str(marker)}, 120.0) == [{"said": "everything"}]
    assert not marker.exists()


STOPS_DELIVERING_ON_CLOSE = """
import contextlib, sys, threading, time
import keras, numpy as np
from feedbench.core.data import make_source
from feedbench.core.spec import Built, Spec
from feedbench.fit import driver

class StopsDeliveringOnClose(keras.utils.PyDataset):
    # A loader with workers of its own (Grain, torch, a user's pool): once stopped, a call in
    # flight never returns.
    def __init__(self):
        super().__init__()
        self.running = threading.Event()
        self.running.set()
    def __len__(self):
        return 6
    def __getitem__(self, i):
        time.sleep(0.3)  # so a prefetch call is in flight when the consumer stops
        if not self.running.is_set():
            threading.Event().wait()
        return np.zeros((2, 4), np.float32), np.zeros((2,), np.int64)
    def close(self):
        self.running.clear()

built = Built(Spec("stops"), "pydataset", StopsDeliveringOnClose(), make_source(n=12))
with contextlib.closing(driver.drive(built, epochs=2, timeout_s=60)) as batches:
    next(batches), next(batches)
print("stopped", flush=True)
"""


def test_a_loader_stopped_while_a_prefetch_call_is_inside_it_does_not_hang_the_exit(cpu_load):
    """The backend's iterator is destroyed before the loader stops: TensorFlow's, destroyed after,
    waited forever at exit for a call that the stopped loader never answers (seen with Grain)."""
    proc = subprocess.run(
        [sys.executable, "-c", STOPS_DELIVERING_ON_CLOSE], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "stopped" in proc.stdout, proc.stderr[-2000:]


# --------------------------------------------------------------------------- any producer that waits


def test_a_producer_without_workers_that_waits_forever_is_named_at_once():
    """A PyDataset without workers (TensorFlow's one producer thread runs it): no Keras pool to
    watch. Before the whole-tree watch it waited out the limit. In a process of its own, as a
    command is: threads an earlier test in this process left computing (they cannot be killed)
    would count as work and hold the verdict back."""
    status, err, took = _drive_until_it_ends("support.faulty:producer_waits", 200, FEEDBENCH_STALL_S="2")
    assert status == 1, err[-2000:]
    said = r"no batch for 2 s and no CPU used by this process or any below it.*waiting: .*faulty\.py:\d+"
    assert re.search(said, err.strip().splitlines()[-1]), err[-2000:]
    assert took < 90, f"ended {took:.0f} s after its start; the run's limit is 300 s"


def _drive_until_it_ends(factory: str, within_s: float, **env) -> tuple[int, str, float]:
    """``feedbench drive FACTORY --epochs 2`` with tests/ on the path and ``env`` added: its exit
    status, its stderr and the seconds it ran (failing if it runs past ``within_s``)."""
    started = time.monotonic()
    proc = _cli("drive", factory, "--epochs", "2", env=dict(os.environ, PYTHONPATH=TESTS, **env))
    try:
        err = _stderr_within(proc, within_s)
    finally:
        proc.kill()
    return proc.returncode, err, time.monotonic() - started


def test_a_producer_without_workers_that_computes_longer_than_the_stall_window_is_not_a_stall(
    monkeypatch, no_stray_workers
):

    monkeypatch.setenv("FEEDBENCH_STALL_S", "2")
    built = build(Spec("support.faulty:producer_computes_for_3_s", n_samples=80, batch_size=16))
    assert len(driver.run(built, epochs=1, timeout_s=120)) == 5  # 2 batches of 3 CPU seconds each


def test_a_consumer_that_pauses_between_batches_is_not_a_stall(monkeypatch, no_stray_workers):
    """Between two batches the consumer, not the data path, has the time: nothing waits."""

    monkeypatch.setenv("FEEDBENCH_STALL_S", "2")
    built = build(Spec("keyed", n_samples=64, batch_size=16))
    with contextlib.closing(driver.drive(built, epochs=1, timeout_s=120)) as batches:
        for batch in batches:
            if batch.step == 1:
                time.sleep(3.0)
    assert batch.step == 3


def test_a_producer_asleep_in_native_code_ends_drive_soon_after_the_stall_window(tmp_path, cpu_load):
    """time.sleep in TensorFlow's producer thread: no exception can reach it, so once the stall is
    named and the grace has passed, the command ends itself (124) with the stall as its cause,
    long before its time limit (300 s here)."""
    before = _temp_entries()
    status, err, took = _drive_until_it_ends(
        "support.faulty:sleeps_in_native_code",
        120,
        FAULTY_STUCK_MARK=str(tmp_path / "stuck"),
        FEEDBENCH_STALL_S="2",
        FEEDBENCH_STUCK_GRACE_S="3",
    )
    assert status == 124, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "no batch for 2 s and no CPU used" in last and "did not return within 3 s more" in last, err[-2000:]
    assert took < 90, f"ended {took:.0f} s after its start; the run's limit is 300 s"
    assert _temp_entries() - before == set()
