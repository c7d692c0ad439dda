import atexit
import fcntl
import os
import shutil
import tempfile

# Before TensorFlow or Keras is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from feedbench.core import procs, scratch  # noqa: E402

# pytest-xdist runs the tests on every core (pyproject's addopts: `-n auto`; `-n 0` runs them in this
# process). Its controller runs no test; its workers inherit the environment it has at configure time.
ALONE_LOCKS = "FEEDBENCH_TEST_ALONE_LOCKS"


def _is_xdist_controller(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config):
    if not _is_xdist_controller(config):
        # Temporary files of the tests and every process they start go to a folder of this process's own,
        # one per worker directly under the system's (asv's socket paths must stay under 107 bytes).
        atexit.register(scratch.remove_private_folders)
        scratch.use_private_folder()
    if "FEEDBENCH_CACHE" not in os.environ:
        # One cache for the whole test run (its processes and xdist's workers share it); gone when it ends.
        _make_folder_for_the_run("FEEDBENCH_CACHE", "feedbench-cache-")
    if _is_xdist_controller(config):
        _make_folder_for_the_run(ALONE_LOCKS, "feedbench-alone-")


def pytest_unconfigure(config):
    """The private folder goes when the tests are done, not at the interpreter's exit alone (execnet
    ends a worker still busy 15 s into its shutdown with os._exit, skipping atexit; one folder with
    an AutoGraph file in it was left after each recent CI run). The process that ran no test, or the
    only one, then removes what a process killed outright left (``scratch.remove_abandoned``: the
    folders no living process holds)."""
    if not _is_xdist_controller(config):
        scratch.remove_private_folders()
    if not hasattr(config, "workerinput"):
        scratch.remove_abandoned()


def _make_folder_for_the_run(variable: str, prefix: str) -> None:
    folder = tempfile.mkdtemp(prefix=prefix)
    os.environ[variable] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    """One worker per core this process may run on (xdist's own count is physical cores), at most 4:
    each test starts TensorFlow processes of its own, ~1 GB each."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Under xdist, a test marked ``alone`` compares what the whole machine shares (/dev/shm, the
    proportional share of pages other processes map), so no other test runs beside it; the others
    run side by side. A readers-writer lock on two files: a test marked ``alone`` holds the gate for
    its whole run, so others wait at the gate instead of starving it. Outside pytest-timeout's
    timer (tryfirst: the outermost wrapper), over the item's whole run: module fixtures set up and
    torn down inside it are covered too."""
    folder = os.environ.get(ALONE_LOCKS)
    if not folder:
        return (yield)
    alone = item.get_closest_marker("alone") is not None
    with open(os.path.join(folder, "gate"), "a") as gate, open(os.path.join(folder, "tests"), "a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        return (yield)  # closing the files lets go of both locks


@pytest.fixture
def no_stray_workers():
    """Yields the pids alive before the test; asserts no new process is alive after it."""
    before = procs.descendant_pids()
    yield before
    procs.assert_no_new_workers(before)


class HeadlessChromium:
    """Debian's chromium, headless, offline, with a throwaway profile: the DOM and a screenshot of a page."""

    def __init__(self, executable: str, profile_dir):
        from feedbench.report.site import chromium_command

        self.flags = chromium_command(executable, profile_dir)

    def _run(self, *args, timeout=120) -> str:
        import subprocess

        return subprocess.run([*self.flags, *args], capture_output=True, text=True, timeout=timeout).stdout

    def dom(self, url: str, wait_ms: int | None = None) -> str:
        extra = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
        return self._run(*extra, "--dump-dom", url)

    def screenshot(self, url: str, path, size=(1400, 1000), wait_ms: int | None = None):
        extra = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
        self._run(*extra, f"--window-size={size[0]},{size[1]}", f"--screenshot={path}", url)
        return path


@pytest.fixture
def chromium(tmp_path):

    from feedbench.report.site import find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip("no chromium here: .ci/run and the README set-up install Debian's chromium")
    return HeadlessChromium(executable, tmp_path / "chromium-profile")
