import time

import numpy as np
import pytest

from feedbench.core.data import make_source
from feedbench.core.workloads import WORKLOADS, Workload


@pytest.fixture(scope="module")
def batch():
    return np.array(make_source(n=16).x)


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_workload_is_deterministic(name, batch):
    work = Workload(name)
    np.testing.assert_array_equal(work.apply(batch.copy()), work.apply(batch.copy()))


def test_copy_python_and_io_leave_content_alone_numpy_changes_it(batch):
    for name in ("copy", "python", "io"):
        np.testing.assert_array_equal(Workload(name).apply(batch.copy()), batch)
    worked = Workload("numpy").apply(batch.copy())
    assert worked.shape == batch.shape and worked.dtype == np.float32
    assert not np.array_equal(worked, batch)


def test_io_reads_from_disk_and_sleeps_its_latency(batch):
    work = Workload("io", io_latency_s=0.05)
    assert work.storage == "disk" and Workload("copy").storage == "memory"
    start = time.perf_counter()
    work.apply(batch)
    assert time.perf_counter() - start >= 0.05


def test_unknown_workload_is_named():
    with pytest.raises(ValueError, match="unknown workload 'gpu'.*copy"):
        Workload("gpu")
