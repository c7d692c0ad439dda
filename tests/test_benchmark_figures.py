"""The asv benchmarks' derived figures: ratios of settings measured in the same run."""

import os
import sys

import pytest

from feedbench.fit.training import TrainingSummary
from feedbench.measure.setting import SettingResult
from feedbench.measure.throughput import ThroughputFigures

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _grid as grid  # noqa: E402
from benchmarks.throughput import Throughput  # noqa: E402
from benchmarks.training import Training  # noqa: E402


def _speed(samples_per_s, workers=1, error=None):
    figures = None if error else ThroughputFigures(epoch_samples_per_s=samples_per_s)
    return SettingResult(workers, False, error=error, throughput=figures)


def test_throughput_is_also_tracked_against_the_reference_of_its_workload_and_source():
    bench = Throughput()
    setting = ("shm", "python", 2, True, "small")
    reference = (grid.REFERENCE, "python", 1, False, "small")
    assert grid.reference_params(setting) == reference
    cache = {setting: _speed(300.0, 2), reference: _speed(120.0), ("shm", "copy", 2, True, "small"): _speed(9.0, 2)}
    assert bench.track_epoch_samples_per_s_vs_reference(cache, *setting) == pytest.approx(2.5)
    assert bench.track_epoch_samples_per_s_vs_reference(cache, *reference) == 1.0

    cache[reference] = _speed(None, error="no progress for 5 s")
    with pytest.raises(RuntimeError, match=r"compared with, \('keyed', 'python'.*failed: no progress for 5 s"):
        bench.track_epoch_samples_per_s_vs_reference(cache, *setting)
    with pytest.raises(NotImplementedError, match="not measured here"):
        bench.track_epoch_samples_per_s_vs_reference(cache, "shm", "copy", 2, True, "small")


def test_training_is_tracked_as_ratios_of_figures_from_the_same_run():
    summary = TrainingSummary(
        device="cpu",
        seeds=3,
        val_accuracy=0.72,
        val_accuracy_spread=0.01,
        baseline_val_accuracy=0.80,
        baseline_val_accuracy_spread=0.01,
        accuracy_vs_baseline=-0.08,
        accuracy_vs_baseline_spread=0.01,
        accuracy_noise=0.02,
        accuracy_verdict="lower than baseline",
        fit_samples_per_s=600.0,
        baseline_samples_per_s=1200.0,
        starvation=0.25,
        ceiling_samples_per_s=800.0,
        starvation_vs_arrays=0.5,
    )
    params = ("keyed", 2, True, "cpu")
    cache = {params: SettingResult(2, True, training=summary)}
    bench = Training()
    assert bench.track_accuracy_over_baseline(cache, *params) == pytest.approx(0.9)
    assert bench.track_fit_over_ceiling(cache, *params) == pytest.approx(0.75)  # starvation 0.25


def test_a_reference_measured_in_rounds_is_spread_over_the_run_and_its_median_is_used(monkeypatch):
    import feedbench.run.sweep

    reference = (grid.REFERENCE, "copy", 1, False, "small")
    grid_axes = [["shm"], ["copy"], [1, 2], [False], ["small"]]
    settings = grid.applicable(grid_axes)
    measured_order = []
    reference_speeds = iter([100.0, 400.0, 130.0])  # a slow spell at the first: the median ignores it

    def fake_sweep(specs, *args, **kwargs):
        results = []
        for spec in specs:
            key = (spec.impl, spec.workload, spec.workers, spec.use_multiprocessing, spec.size)
            measured_order.append(key)
            speed = next(reference_speeds) if key == reference else 50.0 * spec.workers
            results.append(_speed(speed, spec.workers))
        return results

    monkeypatch.setattr(feedbench.run.sweep, "sweep", fake_sweep)
    cache = grid.measured(grid_axes, ("throughput",), extra=[reference], extra_rounds=3)
    assert measured_order[0] == measured_order[-1] == reference and measured_order.count(reference) == 3
    assert measured_order.index(reference, 1) not in (1, len(measured_order) - 2)  # one between the settings
    assert cache[reference].throughput.epoch_samples_per_s == 130.0
    assert {p: r.throughput.epoch_samples_per_s for p, r in cache.items() if p != reference} == {
        settings[0]: 50.0,
        settings[1]: 100.0,
    }
    measured_order.clear()
    reference_speeds = iter([100.0])
    once = grid.measured(grid_axes, ("throughput",), extra=[reference])
    assert measured_order.count(reference) == 1 and once[reference].throughput.epoch_samples_per_s == 100.0
