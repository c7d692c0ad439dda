"""The training measurement, proven on planted defects: accuracy against the
baseline, fit throughput and starvation, devices."""

import pytest

from feedbench.core.errors import GeneratorFailed
from feedbench.fit import training as train
from support.planted import SLEEP_S

pytestmark = [pytest.mark.slow]

# Easier and shorter than the benchmark task: the tests need a clear signal fast.
TASK = train.Task(n_train=512, n_val=256, epochs=3, band_brightness=0.3)


def test_the_task_is_learnable_and_the_baseline_is_repeatable():
    first = train.fit_baseline(TASK, 0)
    again = train.fit_baseline.__wrapped__(TASK, 0)  # not the cached run: a second fit
    assert first.val_accuracy > 0.6  # chance is 0.25
    assert again.val_accuracy == pytest.approx(first.val_accuracy, abs=0.02)


@pytest.mark.long  # the long tier: three seeds of two trainings
def test_the_keyed_generator_costs_no_accuracy(no_stray_workers):
    result = train.measure_training(TASK.spec("keyed", workers=2, use_multiprocessing=True), TASK.epochs, seeds=3)
    summary = result.summary()
    assert summary.seeds == 3 and len(result.baseline) == 3
    assert abs(summary.accuracy_vs_baseline) < 0.05
    assert summary.val_accuracy > 0.6


def test_labels_misaligned_with_their_samples_are_caught(no_stray_workers):
    result = train.measure_training(TASK.spec("support.planted:misaligned_labels"), TASK.epochs, seeds=2)
    summary = result.summary()
    assert summary.accuracy_verdict == "lower than baseline"
    assert summary.accuracy_vs_baseline < -0.25
    assert summary.val_accuracy < 0.45


@pytest.mark.alone  # a time compared with a ceiling timed beside it: no other test's load between the two
def test_starvation_matches_a_planted_sleep_per_batch(no_stray_workers):
    train.fit_baseline.cache_clear()  # measured beside this run, not earlier under other load (the ceiling always is)
    # Three seeds, each fit paired with a ceiling timed beside it, starvation their median: on a shared
    # machine one pair can catch a load spike on one side only (CI once timed a ceiling at 3x the fit's step).
    summary = train.measure_training(TASK.spec("support.planted:sleeps_per_batch"), TASK.epochs, seeds=3).summary()
    # A step takes bs / ceiling samples/s; fit's prefetch may hide part of each sleep behind it, so the
    # share of time waiting lies between all of the sleep hidden but its excess and none of it hidden.
    step_s = TASK.batch_size / summary.ceiling_samples_per_s
    hidden, serial = max(0.0, 1 - step_s / SLEEP_S), SLEEP_S / (SLEEP_S + step_s)
    assert hidden - 0.1 < summary.starvation < serial + 0.1
    assert summary.fit_samples_per_s < summary.ceiling_samples_per_s
    assert summary.starvation_vs_arrays is not None


@pytest.mark.long  # the long tier: three trainings
def test_the_ceiling_is_measured_beside_each_setting_not_once_per_process(no_stray_workers):
    """Each setting's fit-over-ceiling divides by a ceiling of its own time: one measurement shared
    by a grid moved every setting's ratio alike when it was off."""
    first = train.measure_training(TASK.spec("keyed"), TASK.epochs, seeds=2)
    second = train.measure_training(TASK.spec("keyed"), TASK.epochs, seeds=1)
    assert len(first.ceiling) == 2 and len(second.ceiling) == 1
    assert second.ceiling[0] != first.ceiling[0]  # seed 0 measured again, not the first setting's figure
    assert all(c > 0 for c in first.ceiling + second.ceiling)


def test_a_generator_that_raises_during_fit_fails_with_one_line(no_stray_workers):
    with pytest.raises(GeneratorFailed, match=r"raised at a model.fit step: .*planted failure at index 3"):
        train.measure_training(
            TASK.spec("support.planted:raising", workers=2, use_multiprocessing=True), TASK.epochs, 1
        )


def test_a_generator_that_hangs_during_fit_ends_at_the_limit(no_stray_workers):
    from feedbench.core.errors import DriveTimeout

    with pytest.raises(DriveTimeout, match="time limit of 3 s"):
        train.measure_training(TASK.spec("support.planted:hanging", workers=2), TASK.epochs, 1, timeout_s=3)


def test_without_a_gpu_the_gpu_variant_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(train, "current_device", lambda: "cpu")
    with pytest.raises(ValueError, match=r"^device 'gpu' asked for, but Keras backend 'tensorflow' computes on 'cpu'"):
        train.require_device("gpu")
    assert train.device_env("cpu") == {"FEEDBENCH_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "-1"}
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        train.device_env("tpu")
