"""The sweep survives settings that take its measuring process down."""

import pytest  # noqa: E402

from feedbench.core import procs
from feedbench.generators import Spec
from feedbench.measure.setting import SettingResult, median_of
from feedbench.measure.throughput import ThroughputFigures
from feedbench.run.sweep import sweep

pytestmark = [pytest.mark.slow]


def test_a_dead_child_fails_one_setting_and_the_rest_are_measured():
    before = procs.descendant_pids()
    specs = [
        Spec("support.planted:plain", n_samples=64, batch_size=16),
        Spec("support.planted:ends_its_process", n_samples=64, batch_size=16),
        Spec("support.planted:plain", n_samples=64, batch_size=16, workers=2),
    ]
    seen = []
    records = sweep(specs, ("throughput",), epochs=2, timeout_s=30, progress=lambda i, r: seen.append(i))
    assert records[0].error is None and records[0].throughput.samples_per_s > 0
    assert "exited with status 3" in records[1].error
    assert records[2].error is None and records[2].workers == 2
    assert records[0].memory is None  # only what was asked for
    assert sorted(seen) == [0, 1, 2]
    procs.assert_no_new_workers(before)


def test_a_setting_stuck_in_native_code_is_failed_and_the_next_starts_in_a_fresh_process():
    """The measuring child ends itself when a thread stays stuck past the limit; the sweep goes on."""
    before = procs.descendant_pids()
    specs = [
        Spec("support.planted:stuck_in_native_code", n_samples=64, batch_size=16),
        Spec("support.planted:plain", n_samples=64, batch_size=16),
    ]
    records = sweep(specs, ("throughput",), epochs=1, timeout_s=2, env={"FEEDBENCH_STUCK_GRACE_S": "1"})
    assert "exited with status 124" in records[0].error and "stuck in native code" in records[0].error
    assert records[1].error is None and records[1].throughput.samples_per_s > 0
    procs.assert_no_new_workers(before)


@pytest.mark.long  # the long tier: two whole memory sweeps
def test_memory_does_not_depend_on_the_order_of_settings():
    specs = [
        Spec("keyed", n_samples=128, batch_size=16, workers=w, use_multiprocessing=mp)
        for w, mp in [(1, False), (2, False), (2, True)]
    ]
    forward = sweep(specs, ("memory",), epochs=2, timeout_s=60)
    backward = sweep(specs[::-1], ("memory",), epochs=2, timeout_s=60)[::-1]
    for one, other in zip(forward, backward):
        assert one.error is None and other.error is None
        a, b = one.memory.peak_tree_uss_bytes, other.memory.peak_tree_uss_bytes
        # Each setting has a process of its own, so what is left is noise (a few per cent beside a CPU
        # burner); measured in one shared process, a setting carried the memory of those before it.
        assert abs(a - b) <= 0.12 * max(a, b), (one.workers, one.use_multiprocessing, a, b)


def test_repeats_measure_the_whole_list_round_after_round_and_report_medians(monkeypatch):
    """No process is started: the child is replaced by one that answers from a table."""
    from feedbench.run import sweep as sweep_module

    speeds = {"a": iter([100.0, 300.0, 200.0]), "b": iter([10.0, 30.0, 20.0])}
    order = []

    def answer(module, request, limit, env, on_result, **_):
        for index, spec in zip(request["indices"], request["specs"]):
            order.append(spec["impl"])
            result = SettingResult(1, False, throughput=ThroughputFigures(samples_per_s=next(speeds[spec["impl"]])))
            on_result({"index": index, "result": result.to_json()})
        return []

    monkeypatch.setattr(sweep_module, "run_child", answer)
    told = []
    found = sweep_module.sweep(
        [Spec("a"), Spec("b")], ("throughput",), repeats=3, progress=lambda i, r: told.append((i, r))
    )
    assert order == ["a", "b"] * 3  # rounds over the whole list, not one setting three times in a row
    assert [r.throughput.samples_per_s for r in found] == [200.0, 20.0]
    assert sorted((i, r.throughput.samples_per_s) for i, r in told) == [(0, 200.0), (1, 20.0)]
    with pytest.raises(ValueError, match="repeats=0 given"):
        sweep_module.sweep([Spec("a")], ("throughput",), repeats=0)


def test_the_repeats_of_a_setting_pool_their_measured_epochs():
    from feedbench.measure.throughput import ThroughputFigures

    def measured(figure, epochs):
        figures = ThroughputFigures(epoch_samples_per_s=figure, measured_epochs_samples_per_s=epochs)
        return SettingResult(1, False, throughput=figures)

    one = median_of([measured(100.0, [90.0, 100.0, 110.0]), measured(120.0, [120.0]), measured(80.0, None)])
    assert one.throughput.measured_epochs_samples_per_s == [90.0, 100.0, 110.0, 120.0]  # every repeat's epochs
    # the figure is their median (what asv records from those samples), not the median of the
    # repeats' figures (100): a ratio to this setting and asv's value for it are the same number
    assert one.throughput.epoch_samples_per_s == 105.0
    bare = median_of([measured(100.0, None), measured(120.0, None), measured(80.0, None)])
    assert bare.throughput.epoch_samples_per_s == 100.0 and bare.throughput.measured_epochs_samples_per_s is None


def test_the_median_of_repeats_fails_a_setting_that_failed_once_and_keeps_every_problem():
    def measured(speed, problems=(), error=None):
        figures = None if error else ThroughputFigures(samples_per_s=speed, first_batch_s=speed / 1000)
        return SettingResult(2, True, error=error, throughput=figures, problems=list(problems))

    one = median_of([measured(90.0), measured(120.0, ["missing"]), measured(100.0, ["duplicated", "missing"])])
    assert one.throughput.samples_per_s == 100.0 and one.throughput.first_batch_s == 0.1
    assert one.problems == ["missing", "duplicated"] and one.workers == 2
    failed = median_of([measured(90.0), measured(None, error="no progress for 5 s"), measured(100.0)])
    assert failed.error == "repeat 2 of 3: no progress for 5 s"
    assert median_of([measured(90.0)]).throughput.samples_per_s == 90.0


def test_a_repeated_sweep_measures_every_round_for_real():
    specs = [Spec("keyed", n_samples=64, batch_size=16), Spec("keyed", n_samples=64, batch_size=16, workers=2)]
    found = sweep(specs, ("throughput",), epochs=2, timeout_s=60, repeats=2)
    assert [r.workers for r in found] == [1, 2]
    assert all(r.error is None and r.throughput.samples_per_s > 0 for r in found)
