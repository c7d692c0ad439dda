"""TensorFlow run in forked workers (after the forking process had started it) is flagged in every
run, whether or not that run happened to hang; a run that hung for it is tried again."""

import pytest

from feedbench.generators import Spec
from feedbench.measure.setting import Context, measure_setting

pytestmark = [pytest.mark.slow]

N, BS = 160, 16


def _measure(name, measures, multiprocessing=True):
    spec = Spec(name, n_samples=N, batch_size=BS, workers=2, use_multiprocessing=multiprocessing)
    return measure_setting(spec, measures, Context(epochs=2, timeout_s=60))


def test_tensorflow_in_forked_workers_is_flagged_and_nothing_else(no_stray_workers):
    result = _measure("planted:tensorflow_in_worker", ("throughput", "determinism"))
    assert result.error is None
    assert result.problems == ["forked_tensorflow"]  # the stream itself is clean: nothing else
    assert "TensorflowInWorker.__getitem__ at planted.py" in result.forked_tensorflow
    assert "not fork-safe" in result.forked_tensorflow and "tried again" not in result.forked_tensorflow


@pytest.mark.parametrize(
    "name,multiprocessing",
    [("planted:tensorflow_in_worker", False), ("planted:plain", True)],
    ids=["tensorflow-in-threads", "numpy-in-forked-workers"],
)
def test_the_same_generator_in_threads_or_without_tensorflow_is_not_flagged(name, multiprocessing, no_stray_workers):
    result = _measure(name, ("throughput", "determinism"), multiprocessing)
    assert result.error is None and result.problems == [] and result.forked_tensorflow is None


def test_a_run_that_hung_after_tensorflow_ran_in_a_fork_is_tried_again_and_says_so(
    tmp_path, monkeypatch, no_stray_workers
):
    import faulty
    from feedbench.fit import supervise

    monkeypatch.setattr(supervise, "STALL_S", 2.0)  # as the benchmark suite sets it (5 s there)
    monkeypatch.setattr(faulty, "DEADLOCK_ONCE_MARKER", str(tmp_path / "deadlocked"))
    result = _measure("faulty:deadlocks_once_after_tensorflow_in_a_fork", ("throughput",))
    assert (tmp_path / "deadlocked").exists()  # the first run really hung
    assert result.error is None and result.throughput.samples_per_s > 0  # the second one measured
    assert result.problems == ["forked_tensorflow"]
    said = result.forked_tensorflow
    assert "1 run(s) here failed and were tried again: throughput: " in said
    assert "no progress for 2 s" in said and said.count("TensorFlow ran in") == 2  # the stall names the cause


def test_a_run_that_hung_without_tensorflow_in_a_fork_fails_and_is_not_tried_again(
    tmp_path, monkeypatch, no_stray_workers
):
    import faulty
    from feedbench.fit import supervise

    monkeypatch.setattr(supervise, "STALL_S", 2.0)
    monkeypatch.setattr(faulty, "DEADLOCK_ONCE_MARKER", str(tmp_path / "deadlocked"))
    result = _measure("faulty:deadlocks_once_in_a_fork", ("throughput",))
    assert (tmp_path / "deadlocked").exists()
    assert result.error is not None and "no progress for 2 s" in result.error
    assert "TensorFlow ran in" not in result.error  # no fork hazard named where there was none
    assert result.problems == [] and result.forked_tensorflow is None
