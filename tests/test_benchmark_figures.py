"""The asv benchmarks' derived figures: ratios of settings measured in the same run."""

import math
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

from feedbench.suite import grid as suite_grid  # noqa: E402


def _speed(samples_per_s, workers=1, error=None):
    figures = None if error else ThroughputFigures(epoch_samples_per_s=samples_per_s)
    return SettingResult(workers, False, error=error, throughput=figures)


def test_throughput_is_also_tracked_against_the_reference_of_its_workload_and_source():
    bench = Throughput()
    setting = ("shm", "python", 2, True, "small")
    reference = (grid.REFERENCE, "python", 1, False, "small")
    assert grid.GRID.reference_params(setting) == reference
    cache = {setting: _speed(300.0, 2), reference: _speed(120.0), ("shm", "copy", 2, True, "small"): _speed(9.0, 2)}
    assert bench.track_epoch_samples_per_s_vs_reference(cache, *setting) == pytest.approx(2.5)
    assert bench.track_epoch_samples_per_s_vs_reference(cache, *reference) == 1.0

    cache[reference] = _speed(None, error="no progress for 5 s")
    with pytest.raises(RuntimeError, match=r"compared with, \('keyed', 'python'.*failed: no progress for 5 s"):
        bench.track_epoch_samples_per_s_vs_reference(cache, *setting)
    with pytest.raises(grid.SkipNotImplemented, match="not measured here"):
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
    settings = grid.GRID.applicable(grid_axes)
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
    cache = grid.GRID.measured(grid_axes, ("throughput",), extra=[reference], extra_rounds=3)
    assert measured_order[0] == measured_order[-1] == reference and measured_order.count(reference) == 3
    assert measured_order.index(reference, 1) not in (1, len(measured_order) - 2)  # one between the settings
    assert cache[reference].throughput.epoch_samples_per_s == 130.0
    assert {p: r.throughput.epoch_samples_per_s for p, r in cache.items() if p != reference} == {
        settings[0]: 50.0,
        settings[1]: 100.0,
    }
    measured_order.clear()
    reference_speeds = iter([100.0])
    once = grid.GRID.measured(grid_axes, ("throughput",), extra=[reference])
    assert measured_order.count(reference) == 1 and once[reference].throughput.epoch_samples_per_s == 100.0


def test_epoch_time_leaves_the_flaw_demos_to_throughput_and_times_the_rest():
    """EpochTime times an epoch under Keras's worker pool; a flaw demo's is keyed's again, and its
    seeds' TensorFlow ops in forked workers made the timing fail in one run of two."""
    from benchmarks.throughput import EpochTime

    for impl in grid.FLAW_DEMOS:
        with pytest.raises(NotImplementedError, match="Throughput tracks"):
            EpochTime().setup(impl, 1, False)
        assert grid.GRID.skip_reason(impl, "copy", 1, False, "small") is None  # still in Throughput's grid
    assert grid.GRID.epoch_time_skip_reason("keyed", 2, True) is None
    too_many = 4 * suite_grid.CORES
    assert grid.GRID.epoch_time_skip_reason("keyed", too_many, False) == grid.GRID.skip_reason(
        "keyed", "copy", too_many
    )


def test_throughput_hands_asv_its_measured_epochs_as_samples():
    """asv takes a result with samples as it takes a timing's: it records their median and its
    statistics; the median must be the tracked figure itself, and a ratio's samples are the epochs'
    rates over the reference's figure."""
    import statistics

    bench = Throughput()
    setting, reference = ("shm", "copy", 2, True, "small"), (grid.REFERENCE, "copy", 1, False, "small")
    rates = [280.0, 310.0, 300.0, 900.0]

    def measured(figure, epochs, workers=1):
        figures = ThroughputFigures(epoch_samples_per_s=figure, measured_epochs_samples_per_s=epochs)
        return SettingResult(workers, False, throughput=figures)

    cache = {setting: measured(statistics.median(rates), rates, 2), reference: measured(120.0, [100.0, 120.0, 130.0])}
    tracked = bench.track_epoch_samples_per_s(cache, *setting)
    assert tracked == {"samples": rates, "number": 1}
    assert statistics.median(tracked["samples"]) == cache[setting].throughput.epoch_samples_per_s
    ratio = bench.track_epoch_samples_per_s_vs_reference(cache, *setting)
    assert ratio["samples"] == pytest.approx([r / 120.0 for r in rates])
    assert statistics.median(ratio["samples"]) == pytest.approx(statistics.median(rates) / 120.0)
    # one measured epoch is no spread: the bare figure, as before
    cache[setting] = measured(300.0, [300.0], 2)
    assert bench.track_epoch_samples_per_s(cache, *setting) == 300.0
    assert bench.track_epoch_samples_per_s_vs_reference(cache, *setting) == pytest.approx(2.5)


def test_a_setting_that_ran_tensorflow_in_forked_workers_tracks_its_flag_alone():
    """Such a setting hung, crashed or ran, by chance, from run to run: its figures are n/a in every
    run (not a number in one and failed in the next), its flag is 1 even where its run failed."""
    from benchmarks.determinism import Stream

    hazard = "TensorFlow ran in forked workers at reseeded.py:12"
    ran = dict(throughput=ThroughputFigures(epoch_samples_per_s=500.0), forked_tensorflow=hazard)
    lucky = SettingResult(4, True, problems=["repeated_draws", "forked_tensorflow"], **ran)
    unlucky = SettingResult(4, True, error="worker died (SIGSEGV)", forked_tensorflow=hazard)
    clean = SettingResult(4, True, throughput=ThroughputFigures(epoch_samples_per_s=500.0), problems=[])
    stream, speed = Stream(), Throughput()
    for result in (lucky, unlucky):
        cache = {("seed_reseeded", "copy", 4, True, "small"): result, ("keyed", "copy", 1, False, "small"): clean}
        assert stream.track_forked_tensorflow(cache, "seed_reseeded", 4, True) == 1.0
        for figure in (stream.track_problems, stream.track_problem_missing):
            with pytest.raises(grid.SkipNotImplemented, match="forked workers"):
                figure(cache, "seed_reseeded", 4, True)
        for figure in (speed.track_epoch_samples_per_s, speed.track_epoch_samples_per_s_vs_reference):
            with pytest.raises(grid.SkipNotImplemented, match="forked workers"):
                figure(cache, "seed_reseeded", "copy", 4, True, "small")
    cache = {("keyed", "copy", 4, True, "small"): clean, ("keyed", "copy", 1, False, "small"): clean}
    assert stream.track_forked_tensorflow(cache, "keyed", 4, True) == 0.0
    assert stream.track_problems(cache, "keyed", 4, True) == 0.0
    assert speed.track_epoch_samples_per_s_vs_reference(cache, "keyed", "copy", 4, True, "small") == 1.0
    with pytest.raises(RuntimeError, match="SIGSEGV"):  # a failure without the hazard still fails
        failed = {("keyed", "copy", 4, True, "small"): SettingResult(4, True, error="SIGSEGV")}
        stream.track_problems(failed, "keyed", 4, True)


def test_the_number_of_tries_after_forked_tensorflow_failed_is_read_when_used(monkeypatch):
    from feedbench.core.settings import Settings
    from feedbench.measure import setting

    monkeypatch.delenv("FEEDBENCH_FORK_TRIES", raising=False)
    assert setting.fork_tries() == Settings().fork_tries == 3
    monkeypatch.setenv("FEEDBENCH_FORK_TRIES", "1")
    assert setting.fork_tries() == 1
    assert grid.MEASURING_ENV["FEEDBENCH_FORK_TRIES"] == "1"
    for wrong in ("0", "two", "\u00b2"):
        monkeypatch.setenv("FEEDBENCH_FORK_TRIES", wrong)
        with pytest.raises(ValueError, match=f"FEEDBENCH_FORK_TRIES={wrong!r} given; expected a whole number, 1 or"):
            setting.fork_tries()

    from feedbench.core.errors import ForkedTensorflowFailed

    class HangsAfterForkedTensorflow:
        name = "memory"
        tries = 0

        def fill(self, spec, ctx, result):
            self.tries += 1
            raise ForkedTensorflowFailed("no batch for 5 s after TensorFlow ran in forked workers")

    for tries in (1, 2):
        monkeypatch.setenv("FEEDBENCH_FORK_TRIES", str(tries))
        measure = HangsAfterForkedTensorflow()
        with pytest.raises(ForkedTensorflowFailed):
            setting._ForkRetries(budget_s=600.0).fill(measure, None, None, None)
        assert measure.tries == tries


# determinism.Stream's flags: method -> (profile's check, the figure that says whether it was measured)
FLAGS = {
    "track_problem_missing": ("missing", "missing"),
    "track_problem_duplicated": ("duplicated", "duplicated"),
    "track_problem_never_delivered": ("never_delivered", "never_delivered"),
    "track_problem_in_order": ("in_order", "in_order"),
    "track_problem_reproducible": ("reproducible", "reproducible"),
    "track_problem_matches_serial": ("matches_serial", "matches_serial"),
    "track_problem_repeated_draws": ("repeated_draws", "repeated_draws"),
    "track_problem_source_intact": ("source_intact", "source_intact"),
    "track_problem_epoch_diversity": ("epoch_diversity", "frozen_fraction"),
    "track_problem_aliased_batches": ("aliased_batches", "aliased_batches"),
    "track_problem_mismatched_inputs": ("mismatched_inputs", "mismatched_inputs"),
    "track_problem_uneven_coverage": ("uneven_coverage", "coverage_spread"),
}
# memory.TreeMemory's flags: method -> (profile's check, the figure that says whether a soak judged it)
LEAK_FLAGS = {
    "track_problem_leaked_memory": ("leaked_memory", "growth_memory_main_bytes"),
    "track_problem_leaked_threads": ("leaked_threads", "growth_threads_main"),
    "track_problem_leaked_files": ("leaked_files", "growth_files_main"),
    "track_problem_leaked_processes": ("leaked_processes", "growth_processes"),
}


def test_each_leak_verdict_is_tracked_as_the_flag_profile_sets_over_a_soak_long_enough():
    from benchmarks.memory import TreeMemory

    from feedbench.measure import leaks
    from feedbench.measure.memory import MemoryFigures

    assert TreeMemory.epochs >= leaks.MIN_EPOCHS  # every run of the suite judges leaks
    params = ("keyed", "copy", 2, False, "small")
    bench = TreeMemory()
    assert sorted(LEAK_FLAGS) == sorted(m for m in dir(bench) if m.startswith("track_problem_"))
    for method, (check, figure) in LEAK_FLAGS.items():
        track = getattr(bench, method)
        failed = SettingResult(2, False, memory=MemoryFigures(**{figure: 3.0}), problems=[check])
        assert track({params: failed}, "keyed", 2, False, "small") == 1.0, method
        others = [c for c, _ in LEAK_FLAGS.values() if c != check]
        passed = SettingResult(2, False, memory=MemoryFigures(**{figure: 0.0}), problems=others)
        assert track({params: passed}, "keyed", 2, False, "small") == 0.0, method
        unjudged = SettingResult(2, False, memory=MemoryFigures(), problems=[check])
        assert math.isnan(track({params: unjudged}, "keyed", 2, False, "small")), method


def test_each_check_of_the_stream_is_tracked_as_the_flag_profile_sets():
    """1 where profile's check failed whatever the count behind it (a race's 384 or 64 duplicated
    samples are the same figure), 0 where it passed (a frozen share within chance included), n/a
    where the figure it reads was not measured."""
    from benchmarks.determinism import Stream

    from feedbench.measure.determinism import DeterminismFigures

    params = ("tfdata_service", "copy", 2, True, "small")
    bench = Stream()
    assert sorted(FLAGS) == sorted(m for m in dir(bench) if m.startswith("track_problem_"))
    for method, (check, figure) in FLAGS.items():
        track = getattr(bench, method)
        for count in (384, 64):
            failed = SettingResult(2, True, determinism=DeterminismFigures(**{figure: count}), problems=[check])
            assert track({params: failed}, "tfdata_service", 2, True) == 1.0, method
        others = [c for c, _ in FLAGS.values() if c != check]
        passed = SettingResult(2, True, determinism=DeterminismFigures(**{figure: 0.3}), problems=others)
        assert track({params: passed}, "tfdata_service", 2, True) == 0.0, method
        unmeasured = SettingResult(2, True, determinism=DeterminismFigures(), problems=[check])
        assert math.isnan(track({params: unmeasured}, "tfdata_service", 2, True)), method
    # a stream that is not reproducible is not compared with the serial one: n/a, not "passed",
    # though the count of differing batches was taken
    racy = DeterminismFigures(reproducible=False, matches_serial=None, batches_differing_serial=31)
    racy_result = SettingResult(2, True, determinism=racy, problems=["reproducible"])
    assert math.isnan(bench.track_problem_matches_serial({params: racy_result}, "tfdata_service", 2, True))
    assert bench.track_problem_reproducible({params: racy_result}, "tfdata_service", 2, True) == 1.0


def test_the_report_page_names_every_flag_of_the_stream():
    """A flag the report page does not know would be tracked by asv and left out of its matrix."""
    from benchmarks.determinism import Stream

    from feedbench.report import site

    flags = [m.removeprefix("track_") for m in dir(Stream) if m.startswith("track_problem_")]
    assert len(flags) >= 12 and [flag for flag in flags if flag not in site.CHECKS] == []
