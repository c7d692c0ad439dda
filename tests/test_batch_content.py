"""Batches that are wrong although their ids look right, and coverage under fit(steps_per_epoch):
each planted flaw is flagged for exactly its flaw, and its clean twin of the same style for nothing."""

import pytest

from feedbench.generators import Spec
from feedbench.measure import measure_determinism

pytestmark = [pytest.mark.slow]

N, BS = 160, 16  # 10 batches an epoch
SERIAL, THREADS, PROCESSES = (1, False), (2, False), (2, True)


def judge(name, setting, epochs=3, **spec):
    workers, multiprocessing = setting
    values = {"n_samples": N, "batch_size": BS, **spec}
    found = Spec(name, workers=workers, use_multiprocessing=multiprocessing, **values)
    return measure_determinism(found, epochs=epochs, timeout_s=120)


@pytest.mark.parametrize("setting", [SERIAL, pytest.param(THREADS, marks=pytest.mark.long)], ids=["serial", "threads"])
def test_one_buffer_returned_for_every_batch_is_flagged_and_a_new_array_per_batch_is_not(setting):
    flawed = judge("support.planted:fills_one_buffer", setting)
    # the buffer returned twice is seen where Keras takes it; what it does to the stream depends on
    # whether TensorFlow's conversion copied the buffer in that run
    assert "aliased_batches" in flawed.problems() and flawed.aliased_batches > 0
    assert set(flawed.problems()) <= {"aliased_batches", "mismatched_inputs", "reproducible", "matches_serial"}
    clean = judge("support.planted:fills_a_new_array", setting)
    assert clean.problems() == [] and clean.aliased_batches == 0 and clean.mismatched_inputs == 0
    assert clean.inputs_checked == 3 * N  # every row was placed by its bytes, and was its id's


@pytest.mark.long  # the long tier: in CI the one-buffer check's twin is a new array per batch
@pytest.mark.parametrize("setting", [SERIAL, THREADS], ids=["serial", "threads"])
def test_views_of_data_nobody_writes_are_no_alias(setting):
    views = judge("support.planted:returns_views", setting)
    assert views.problems() == [] and views.aliased_batches == 0


@pytest.mark.long  # the long tier: the one-buffer check's other setting
def test_worker_processes_pickle_each_batch_so_one_buffer_is_safe_there():
    # the serial reference itself may be the corrupted stream: differing from it is allowed
    assert set(judge("support.planted:fills_one_buffer", PROCESSES).problems()) <= {"matches_serial"}


def test_inputs_under_another_samples_label_are_flagged_and_nothing_else():
    flawed = judge("support.planted:misaligned_labels", SERIAL)
    assert flawed.problems() == ["mismatched_inputs"] and flawed.mismatched_inputs == 3 * N
    clean = judge("support.planted:plain", SERIAL)
    assert clean.problems() == [] and clean.mismatched_inputs == 0


def test_inputs_augmented_past_recognition_leave_the_check_unjudged():
    probe = judge(
        "support.corpus:keyed_augment", SERIAL
    )  # rotations, shifts, noise: placed by correlation or not at all
    assert "mismatched_inputs" not in probe.problems()
    assert probe.mismatched_inputs in (0, None)
    if probe.mismatched_inputs is None:
        assert "content matching" in probe.reasons["mismatched_inputs"]


STEPS, BIG_N, BIG_BS, SOAK = 8, 512, 32, 6  # 16 batches, fit takes 8 an epoch


def test_steps_below_the_length_are_judged_over_the_run():
    serial = judge("support.planted:plain", SERIAL, epochs=SOAK, n_samples=BIG_N, batch_size=BIG_BS, steps=STEPS)
    # each epoch resumes where the last stopped: every sample seen 3 times in 6 half-epochs
    assert serial.problems() == [] and serial.coverage_spread == 0 and serial.coverage_note is None
    assert serial.missing is None and "steps_per_epoch (8)" in serial.reasons["missing"]
    assert serial.never_delivered == 0


def test_steps_of_a_whole_epoch_are_judged_per_epoch():
    whole = judge("support.planted:plain", SERIAL, steps=N // BS)
    assert whole.problems() == [] and whole.missing == 0 and whole.coverage_spread is None


@pytest.mark.parametrize(
    "setting", [THREADS, pytest.param(PROCESSES, marks=pytest.mark.long)], ids=["threads", "processes"]
)
def test_worker_pools_that_start_each_epoch_over_leave_coverage_uneven(setting):
    uneven = judge("support.planted:plain", setting, epochs=SOAK, n_samples=BIG_N, batch_size=BIG_BS, steps=STEPS)
    assert "uneven_coverage" in uneven.problems() and uneven.coverage_spread > 1
    assert (
        "uneven from epoch" in uneven.coverage_note and f"over {SOAK} epochs of {STEPS} batches" in uneven.coverage_note
    )
    assert set(uneven.problems()) <= {"uneven_coverage", "matches_serial", "duplicated"}
