"""Leak verdicts (NOTE [ Leak verdicts ] in feedbench.measure.leaks), proven both ways: each planted
leak is flagged for its resource, in its place, and its clean twin of the same style for nothing."""

import threading

import pytest

from feedbench.generators import Spec
from feedbench.measure import leaks, measure_memory
from support import planted

N, BS = 160, 16  # 10 batches an epoch
SOAK = leaks.MIN_EPOCHS + 1


# --------------------------------------------------------------------------- the trend test itself


def test_a_steady_rise_is_significant_and_its_slope_is_the_rise():
    found = leaks.trend([10.0 + 3 * i for i in range(7)])
    assert found.significant and found.slope == pytest.approx(3) and found.low == pytest.approx(3)
    assert found.growth == pytest.approx(3)


def test_a_flat_or_falling_series_grows_by_nothing():
    assert leaks.trend([5.0] * 7).growth == 0 and leaks.trend([5.0] * 7).z == 0
    falling = leaks.trend([100.0 - 4 * i for i in range(7)])
    assert falling.slope < 0 and falling.growth == 0  # never a negative growth


def test_noise_without_a_trend_is_within_noise():
    noisy = leaks.trend([10.0, 14.0, 9.0, 13.0, 11.0, 10.0, 12.0])
    assert not noisy.significant and noisy.growth == 0


def test_a_cache_that_fills_up_and_stays_is_no_leak():
    filled = leaks.trend([0.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0])
    assert not filled.significant and filled.growth == 0 and not leaks.leaking(("threads", "main"), filled)


def test_six_steps_up_are_needed_and_fewer_epochs_say_so():
    assert not leaks.trend([1.0, 2.0, 3.0, 4.0, 5.0]).significant  # 5 readings cannot reach 1 %
    assert leaks.trend([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).significant
    readings = [leaks.ResourceReading(epoch, 0, 0, 0, 0) for epoch in range(leaks.MIN_EPOCHS - 1)]
    trends, why = leaks.judge(readings)
    assert trends == {} and f"{leaks.MIN_EPOCHS} or more epochs" in why and "--soak" in why


def test_the_soak_the_command_line_asks_for_is_the_one_a_verdict_needs():
    from feedbench import cli

    assert cli.MIN_SOAK == leaks.MIN_EPOCHS


def test_a_soak_gets_the_time_limit_of_its_epochs():
    from feedbench.measure.setting import soak_share

    assert soak_share(3, None) == 1.0 and soak_share(3, 3) == 1.0 and soak_share(2, 8) == 4.0


def test_pools_are_held_weakly_and_read_while_keras_adds_one():
    """The watchdog reads the pools every 50 ms while Keras's thread adds one at each epoch."""
    from feedbench.fit.keras_api import TrackedPools

    class Pool:
        pass

    pools, held, stop = TrackedPools(), [], threading.Event()

    def add():
        while not stop.is_set():
            pool = Pool()
            held[:] = [pool]  # the last one stays alive, the others are let go of
            pools.add(pool)

    adder = threading.Thread(target=add)
    adder.start()
    try:
        for _ in range(2000):
            assert len(list(pools)) <= 2
    finally:
        stop.set()
        adder.join()
    assert list(pools) == held  # the freed ones are gone


def test_memory_in_uneven_steps_is_no_leak_where_its_interval_reaches_below_the_floor():
    """Drift comes in steps (here a clean generator's main process with worker processes, MiB): its
    median slope can reach the floor, its interval's low end does not; an even rise of the same slope does."""
    mib = leaks.MIB
    steps = leaks.trend([(240 + v) * mib for v in (0, 0.1, 2.8, 2.9, 3.0, 6.0, 6.1)])
    assert steps.significant and steps.slope >= leaks.FLOORS["memory"] > steps.low
    assert not leaks.leaking(("memory", "main"), steps)
    even = leaks.trend([240 * mib + i * steps.slope for i in range(7)])
    assert leaks.leaking(("memory", "main"), even)
    every_other_epoch = leaks.trend([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    assert leaks.leaking(("threads", "main"), every_other_epoch)  # counts are judged by the slope


def test_a_rise_below_the_floor_is_not_a_leak():
    small = leaks.trend([i * 0.25 * leaks.MIB for i in range(7)])
    assert small.significant and not leaks.leaking(("memory", "main"), small)
    assert leaks.leaking(("threads", "main"), leaks.trend([float(i) for i in range(7)]))


# --------------------------------------------------------------------------- planted leaks and their twins

SERIAL, THREADS, PROCESSES = (1, False), (2, False), (2, True)
CASES = [  # leaky, clean twin, the resource, where it lives, the settings where it leaks
    ("keeps_every_batch", "keeps_the_last_batch", "memory", "main", [SERIAL, THREADS]),
    ("starts_a_thread_each_epoch", "replaces_its_thread_each_epoch", "threads", "main", [SERIAL, PROCESSES]),
    ("opens_a_file_each_batch", "closes_its_file_each_batch", "files", "main", [SERIAL, THREADS]),
    ("starts_a_process_each_epoch", "waits_for_its_process_each_epoch", "processes", "main", [THREADS, PROCESSES]),
    ("feeds_a_growing_helper", "feeds_a_helper_that_frees", "memory", "workers", [SERIAL, PROCESSES]),
]


def soak(name, workers, multiprocessing):
    spec = Spec(
        f"support.planted:{name}", n_samples=N, batch_size=BS, workers=workers, use_multiprocessing=multiprocessing
    )
    return measure_memory(spec, epochs=SOAK)


# CI soaks one resource in the main process and one in the workers; the others are the long tier.
IN_CI = {"opens_a_file_each_batch", "feeds_a_growing_helper"}


@pytest.mark.parametrize(
    ("leaky", "clean", "resource", "place", "settings"),
    [pytest.param(*c, id=c[0], marks=() if c[0] in IN_CI else pytest.mark.long) for c in CASES],
)
@pytest.mark.slow
def test_each_leak_is_flagged_for_its_resource_and_place_and_its_twin_for_nothing(
    leaky, clean, resource, place, settings, no_stray_workers
):
    for workers, multiprocessing in settings:
        found = soak(leaky, workers, multiprocessing)
        assert found.problems() == [f"leaked_{resource}"], (workers, multiprocessing, found.leaking())
        where = "left running" if resource == "processes" else leaks.PLACES[place]
        assert found.leaking()[resource].startswith(where)
        key = (resource, place)
        assert found.trends[key].growth >= leaks.FLOORS[resource]
        name = f"growth_{resource}" if resource == "processes" else f"growth_{resource}_{place}"
        assert getattr(found.figures(), name + ("_bytes" if resource == "memory" else "")) > 0
        twin = soak(clean, workers, multiprocessing)
        assert twin.problems() == [], (workers, multiprocessing, twin.leaking())
        assert twin.figures().leaks == {}
    # no_stray_workers: the helpers a leak left running went with the run


@pytest.mark.slow
def test_a_leak_in_keras_per_epoch_workers_resets_with_them():
    """Forked workers are re-created every epoch: what one keeps goes with it, so no slope."""
    found = soak("keeps_every_batch", 2, True)
    assert found.problems() == [] and found.figures().growth_memory_main_bytes < leaks.FLOORS["memory"]


@pytest.mark.slow
def test_fewer_epochs_than_a_soak_give_no_verdict_and_say_why():
    found = measure_memory(Spec("support.planted:keeps_every_batch", n_samples=N, batch_size=BS), epochs=3)
    assert found.problems() == [] and found.trends == {} and "--soak" in found.leak_reason
    figures = found.figures()
    assert figures.growth_memory_main_bytes is None and figures.leaks is None


@pytest.mark.slow
def test_workers_that_each_hold_a_large_buffer_move_no_figure_of_the_main_process():
    """The case `growth` got wrong by hundreds of MiB: every forked worker keeps a large buffer, each
    epoch's pool comes and goes. The main process's anonymous memory does not move with it."""
    found = soak("big_worker_buffer", 2, True)
    figures = found.figures()
    # the allocator's own drift (a few hundred KiB an epoch) may be significant: it stays below the
    # floor, far under the 256 MiB buffers that come and go
    assert found.problems() == [] and abs(figures.growth_memory_main_bytes) < leaks.FLOORS["memory"]
    assert abs(figures.growth_memory_workers_bytes) < leaks.FLOORS["memory"]  # each epoch's workers hold the same
    peaks = [r.workers_memory_bytes for r in found.resources[1:]]
    assert min(peaks) > 0.9 * planted.WORKER_BUFFER_BYTES  # the workers were seen holding it


def test_the_profile_says_whether_leaks_were_judged_and_found():
    from feedbench.measure.memory import MemoryFigures
    from feedbench.measure.setting import SettingResult
    from feedbench.report import table

    spec = Spec("keyed")
    clean = SettingResult(1, False, memory=MemoryFigures(leaks={}))
    assert "no leak found over the soak in the 1 settings soaked" in table.render(spec, [clean])
    unjudged = SettingResult(1, False, memory=MemoryFigures())
    assert "leaks not judged" in table.render(spec, [unjudged]) and "--soak 8" in table.render(spec, [unjudged])
    leaky = SettingResult(
        1,
        False,
        memory=MemoryFigures(leaks={"files": "the main process: +16 open descriptors per epoch"}),
        problems=["leaked_files"],
    )
    shown = table.render(spec, [leaky])
    assert "open file descriptors pile up" in shown and "seen at workers=1 mp=off: the main process: +16" in shown
    assert "no leak found" not in shown
