import os
import tempfile

# Before TensorFlow or Keras is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("FEEDBENCH_CACHE", tempfile.mkdtemp(prefix="feedbench-cache-"))

import pytest  # noqa: E402

from feedbench.core import procs  # noqa: E402


@pytest.fixture
def no_stray_workers():
    """Yields the pids alive before the test; asserts no new process is alive after it."""
    before = procs.descendant_pids()
    yield before
    procs.assert_no_new_workers(before)
