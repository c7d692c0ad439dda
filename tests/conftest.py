import atexit
import os
import shutil
import tempfile

# Before TensorFlow or Keras is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from feedbench.core import scratch  # noqa: E402

# The test run's temporary files, and those of every process it starts (pool workers that end
# without atexit included), go to one folder of its own, gone when the run ends: the tests that
# check a call leaves nothing behind look at everything in it.
atexit.register(scratch.remove_private_folders)
scratch.use_private_folder()
if "FEEDBENCH_CACHE" not in os.environ:
    # One cache for the whole test run (its processes share it); gone when the run ends.
    _cache = tempfile.mkdtemp(prefix="feedbench-cache-")
    os.environ["FEEDBENCH_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import pytest  # noqa: E402

from feedbench.core import procs  # noqa: E402


@pytest.fixture
def no_stray_workers():
    """Yields the pids alive before the test; asserts no new process is alive after it."""
    before = procs.descendant_pids()
    yield before
    procs.assert_no_new_workers(before)


class HeadlessChromium:
    """Debian's chromium, headless, offline, with a throwaway profile: the DOM and a screenshot of a page."""

    def __init__(self, executable: str, profile_dir):
        self.flags = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile_dir}",
        ]

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
    import shutil

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium here: .ci/run and the README set-up install Debian's chromium")
    return HeadlessChromium(executable, tmp_path / "chromium-profile")
