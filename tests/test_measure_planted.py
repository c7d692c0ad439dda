"""Every analyzer proven on planted defects: each flaw is flagged, and nothing else."""

import numpy as np
import pytest

from feedbench.generators import Spec
from feedbench.measure import leaks, measure_determinism, measure_memory, measure_throughput
from feedbench.measure.throughput import MAX_EPOCHS
from support import planted

pytestmark = [pytest.mark.slow]

N, BS = 160, 16  # 10 full batches
ALL_CHECKS = {
    "missing",
    "duplicated",
    "in_order",
    "reproducible",
    "matches_serial",
    "epoch_diversity",
    "repeated_draws",
    "source_intact",
}


def determinism(name, workers=1, multiprocessing=False, epochs=3):
    spec = Spec(
        f"support.planted:{name}", n_samples=N, batch_size=BS, workers=workers, use_multiprocessing=multiprocessing
    )
    return measure_determinism(spec, epochs=epochs, timeout_s=120)


def test_the_unflawed_plain_generator_passes_everything():
    result = determinism("plain")
    # No augmentation at all: nothing to freeze or repeat, so no verdict on draws (and no false alarm).
    assert result.problems() == []
    assert result.augmented is False and result.repeated_draws is None and result.epoch_diversity is None
    assert "no random augmentation" in result.reasons["repeated_draws"]
    assert result.missing == 0 and result.never_delivered == 0 and result.in_order
    # The serial setting is the reference: never compared with itself.
    assert result.matches_serial is None and "serial reference" in result.reasons["matches_serial"]


@pytest.mark.long  # the long tier: a whole grid
def test_the_serial_reference_runs_once_per_process_and_still_shows_a_differing_setting(monkeypatch):
    from feedbench.measure import determinism as module

    roles = []
    real = module.record_fresh
    monkeypatch.setattr(module, "record_fresh", lambda *a, **k: roles.append(a[4]) or real(*a, **k))
    monkeypatch.setattr(module, "_SERIAL_RUNS", {}, raising=False)  # a clean slate
    serial = determinism("scaled_by_workers")
    threads = determinism("scaled_by_workers", workers=2)
    plain_threads = determinism("plain", workers=2)
    # the serial setting's own fresh run is the reference of the settings after it
    assert roles == ["main", "repeat", "main", "repeat", "main", "repeat", "serial"]
    assert serial.matches_serial is None and serial.reproducible
    assert threads.reproducible and threads.matches_serial is False  # the flaw still shows
    assert threads.batches_differing_serial == N // BS * 3
    assert plain_threads.matches_serial is True and plain_threads.problems() == []


def test_batch_0_returned_again_in_place_of_batch_3():
    result = determinism("repeats_batch0")
    assert result.missing_per_epoch == [BS] * 3 and result.duplicated_per_epoch == [BS] * 3
    assert result.never_delivered == BS  # the same samples, every epoch
    assert set(result.problems()) == {"never_delivered", "duplicated", "in_order"}


def test_a_dropped_batch():
    result = determinism("drops_a_batch")
    assert result.missing_per_epoch == [BS] * 3 and result.duplicated == 0 and result.dropped_by_design == 0
    assert set(result.problems()) == {"never_delivered"}


def test_reordered_batches():
    result = determinism("reorders")
    assert result.missing == 0 and result.duplicated == 0 and result.in_order is False
    assert result.shuffles_itself is False
    assert set(result.problems()) == {"in_order"}


def test_a_constant_reseeded_before_every_batch():
    result = determinism("reseeds_constant")
    # 10 batches an epoch with one draw pattern: every pair of them, in each of 3 epochs.
    assert result.repeated_draws == 3 * (10 * 9 // 2)
    assert result.frozen_fraction == 1.0 and result.epoch_diversity == 0
    assert result.reproducible  # a constant seed is reproducible: only the draws are wrong
    assert set(result.problems()) == {"repeated_draws", "epoch_diversity"}


@pytest.mark.long  # the long tier: CI sees the flaw in tests/test_corpus.py
def test_global_numpy_rng_in_forked_workers_repeats_draws():
    forked = determinism("global_numpy_rng", workers=2, multiprocessing=True)
    assert forked.repeated_draws > 0
    assert forked.missing == 0 and forked.duplicated == 0 and forked.source_intact and forked.in_order
    assert {"repeated_draws", "reproducible"} <= set(forked.problems())
    assert forked.matches_serial is None  # not reproducible: a comparison with serial would say nothing
    one = determinism("global_numpy_rng", workers=1, multiprocessing=True)
    # One worker draws one stream, but every epoch's new fork restarts it: frozen, not repeated.
    assert one.repeated_draws == 0 and one.frozen_fraction > 0.8
    assert "epoch_diversity" in one.problems()
    serial = determinism("global_numpy_rng")
    assert serial.repeated_draws == 0 and serial.frozen_fraction < 0.2  # one advancing RNG
    assert not serial.reproducible  # unseeded: a fresh process draws other numbers
    assert set(serial.problems()) == {"reproducible"}


@pytest.mark.parametrize(
    "workers,multiprocessing,changed",
    [pytest.param(1, False, N, marks=pytest.mark.long), (2, False, N), (2, True, 2 * BS)],
)
def test_writes_into_a_view_reach_the_source_with_threads_not_with_processes(workers, multiprocessing, changed):
    result = determinism("writes_into_view", workers, multiprocessing)
    # With forked workers only the main process's own reads write the source:
    # the TensorFlow adapter's two spec-inference reads of batches 0 and 1.
    assert result.source_rows_changed == changed and not result.source_intact
    assert set(result.problems()) == {"source_intact"}


SETTINGS = [(1, False), (2, False), (2, True), (4, True)]


@pytest.mark.parametrize(
    "workers,multiprocessing,shuffle",
    [
        pytest.param(1, False, False, marks=pytest.mark.long),
        pytest.param(2, False, True, marks=pytest.mark.long),
        pytest.param(2, True, False, marks=pytest.mark.long),
        (4, True, True),
    ],
)
def test_keyed_passes_everything_under_every_setting(workers, multiprocessing, shuffle):
    spec = Spec(
        "keyed", n_samples=N, batch_size=BS, workers=workers, use_multiprocessing=multiprocessing, shuffle=shuffle
    )
    result = measure_determinism(spec, epochs=3, timeout_s=120)
    assert result.problems() == []
    assert result.epoch_diversity == 1.0 and result.repeated_draws == 0
    assert result.in_order is (None if shuffle else True)


def test_keyed_drops_nothing_and_a_remainder_is_not_missing():
    spec = Spec("keyed", n_samples=N + 5, batch_size=BS)
    result = measure_determinism(spec, epochs=2)
    assert result.missing == 0 and result.dropped_by_design == 0


@pytest.mark.alone  # PSS: other processes mapping the same libraries change each page's share
def test_workers_that_each_keep_a_buffer_show_in_tree_uss_not_main_rss():
    buffer = planted.WORKER_BUFFER_BYTES
    flawed = measure_memory(
        Spec("support.planted:big_worker_buffer", n_samples=N, batch_size=BS, workers=2, use_multiprocessing=True),
        epochs=2,
    )
    clean = measure_memory(
        Spec("support.planted:plain", n_samples=N, batch_size=BS, workers=2, use_multiprocessing=True), epochs=2
    )
    assert flawed.workers_seen >= 2
    assert flawed.peak_workers_uss_bytes - clean.peak_workers_uss_bytes > 1.5 * buffer  # two workers' buffers
    assert flawed.peak_tree_pss_bytes - clean.peak_tree_pss_bytes > 1.5 * buffer
    # what feeding adds above the tree before the run (the tracked figure): the buffers, and in the
    # clean pool far less than one buffer
    assert flawed.peak_tree_pss_added_bytes - clean.peak_tree_pss_added_bytes > 1.5 * buffer
    assert 0 < clean.peak_tree_pss_added_bytes < buffer / 2
    # the tracked figure, each epoch's peak (the median epoch), sees the buffers too
    assert flawed.epoch_peak_pss_added_bytes - clean.epoch_peak_pss_added_bytes > 1.5 * buffer
    assert 0 < clean.epoch_peak_pss_added_bytes < buffer / 2
    assert len(flawed.epoch_peak_pss_bytes) == 2
    # The tree's summed USS is no witness: at each fork the parent's pages become shared and leave
    # its USS, offsetting the buffers. The workers' own USS and the tree's PSS are.
    assert flawed.peak_tree_uss_bytes >= flawed.peak_workers_uss_bytes > 2 * buffer * 0.9
    assert abs(flawed.peak_main_rss_bytes - clean.peak_main_rss_bytes) < buffer / 2  # asv's view misses them
    assert flawed.peak_tree_rss_bytes >= flawed.peak_tree_uss_bytes


@pytest.mark.alone  # PSS, as above
def test_one_epochs_spike_shows_in_the_peak_not_in_the_median_epoch():
    spiky = measure_memory(Spec("support.planted:spikes_in_one_epoch", n_samples=N, batch_size=BS), epochs=5)
    clean = measure_memory(Spec("support.planted:plain", n_samples=N, batch_size=BS), epochs=5)
    buffer = planted.WORKER_BUFFER_BYTES
    assert spiky.peak_tree_pss_added_bytes - clean.peak_tree_pss_added_bytes > 0.8 * buffer
    first, *rest = (peak - spiky.baseline_pss_bytes for peak in spiky.epoch_peak_pss_bytes)
    assert first > 0.8 * buffer and all(peak < buffer / 4 for peak in rest)
    assert abs(spiky.epoch_peak_pss_added_bytes - clean.epoch_peak_pss_added_bytes) < buffer / 4


def test_a_leak_every_batch_shows_as_its_growth_per_epoch():
    epochs = leaks.MIN_EPOCHS + 1
    leaky = measure_memory(Spec("support.planted:leaky_workers", n_samples=N, batch_size=BS, workers=2), epochs=epochs)
    clean = measure_memory(Spec("support.planted:plain", n_samples=N, batch_size=BS, workers=2), epochs=epochs)
    leaked = (N // BS) * planted.LEAK_BYTES_PER_BATCH  # an epoch's
    # anonymous memory of the main process: the allocator may reuse some freed heap for the kept arrays
    assert 0.5 * leaked < leaky.figures().growth_memory_main_bytes < 1.5 * leaked
    assert leaky.problems() == ["leaked_memory"] and "the main process" in leaky.leaking()["memory"]
    assert clean.figures().growth_memory_main_bytes < 0.05 * leaked and clean.problems() == []


def test_growth_needs_a_soak_and_says_so():
    result = measure_memory(Spec("keyed", n_samples=N, batch_size=BS), epochs=3)
    assert result.figures().growth_memory_main_bytes is None and "--soak" in result.leak_reason


def test_a_sleep_per_batch_cuts_throughput_in_proportion():
    plain = measure_throughput(Spec("support.planted:plain", n_samples=N, batch_size=BS), epochs=3, min_s=0)
    slow = measure_throughput(Spec("support.planted:sleeps_per_batch", n_samples=N, batch_size=BS), epochs=3, min_s=0)
    base_batch_s = BS / plain.samples_per_s
    predicted = BS / (base_batch_s + planted.SLEEP_S)
    assert slow.latency_p50_s >= planted.SLEEP_S
    assert slow.samples_per_s < 1.15 * predicted
    # no lower bound from the sleep itself (a loaded machine oversleeps): from what each epoch saw
    for epoch in slow.epochs[1:]:
        assert epoch.samples_per_s > 0.5 * BS / (epoch.latency_max_s + base_batch_s)
    assert [e.batches for e in slow.epochs] == [N // BS] * 3


def test_throughput_runs_epochs_until_they_cover_the_measuring_time():
    exact = measure_throughput(Spec("support.planted:plain", n_samples=N, batch_size=BS), epochs=3, min_s=0)
    assert len(exact.epochs) == 3
    fast = measure_throughput(Spec("support.planted:plain", n_samples=N, batch_size=BS), epochs=3, min_s=0.5)
    assert 3 < len(fast.epochs) <= MAX_EPOCHS and sum(e.wall_s for e in fast.epochs[1:]) >= 0.5
    assert all(e.batches == N // BS for e in fast.epochs)  # stopped between epochs, never inside one
    # 10 batches of at least 20 ms: three epochs after the first always cover 0.5 s (one may, on a
    # loaded machine), so it stops at the fourth epoch at the latest
    slow = measure_throughput(Spec("support.planted:sleeps_per_batch", n_samples=N, batch_size=BS), epochs=2, min_s=0.5)
    assert 2 <= len(slow.epochs) <= 4 and sum(e.wall_s for e in slow.epochs[1:]) >= 0.5
    # the whole-epoch rate is each epoch's samples over its whole wall time, every batch's wait
    # counted, so never above one batch per sleep (no lower bound: a loaded machine sleeps longer)
    whole_epochs = [e.samples / e.wall_s for e in slow.epochs[1:]]
    assert slow.figures().epoch_samples_per_s == pytest.approx(float(np.median(whole_epochs)))
    assert slow.figures().measured_epochs_samples_per_s == pytest.approx(whole_epochs)  # asv's samples
    assert 0 < slow.figures().epoch_samples_per_s < BS / planted.SLEEP_S
    with pytest.raises(ValueError, match="min_s=-1 given"):
        measure_throughput(Spec("support.planted:plain", n_samples=N, batch_size=BS), min_s=-1)


def test_throughput_fields_are_consistent():
    result = measure_throughput(
        Spec("keyed", n_samples=N, batch_size=BS, workers=2, use_multiprocessing=True), epochs=2
    )
    for epoch in result.epochs:
        assert epoch.samples == N and epoch.batches == N // BS
        assert 0 < epoch.latency_p50_s <= epoch.latency_p95_s <= epoch.latency_max_s
        assert 0 < epoch.wait_fraction <= 1
        assert epoch.first_batch_s > 0
    assert set(result.to_dict()) >= {"first_batch_s", "samples_per_s", "latency_p50_s", "latency_p95_s", "per_epoch"}


def test_flips_alone_are_judged_and_batches_left_unaugmented_are_no_repeats():
    flips = measure_determinism(Spec("seed_unseeded", n_samples=N, batch_size=BS), epochs=3, timeout_s=120)
    assert flips.augmented and 0.3 < flips.chance_same_draw < 0.7  # a flip is one bit a row
    assert flips.repeated_draws == 0 and "repeated_draws" not in flips.problems()
    gated = determinism("gated_flips")
    assert gated.repeated_draws == 0 and set(gated.problems()) == set()
