"""The CPU stand-in for a GPU step, proven both ways: a loader slower than the step is below the
ceiling by about the share the step cannot hide; the same loader with enough threads, and a loader
with no cost, are at it. Ratios are measured in one run, against a ceiling measured beside them."""

import pytest

from feedbench.generators import Spec
from feedbench.measure.step_bound import measure_step_bound
from feedbench.measure.throughput import measure_throughput
from support.planted import SLEEP_S

pytestmark = [pytest.mark.slow]

STEP_S = SLEEP_S / 2  # the loader's 20 ms sleep per batch against a 10 ms device step
BATCH = 32
# A starved loader here is near 0.5 of the ceiling. One with no cost measured 0.95-1.0 on an idle
# machine and down to 0.79 beside a CPU burner on 2 cores (its Python per batch waits for a core).
AT_CEILING = 0.7


def _spec(factory, workers):
    # 64 batches an epoch: the start of an epoch (a new pool, the first sleep) is a small share
    return Spec(factory, n_samples=64 * BATCH, batch_size=BATCH, workers=workers)


# Each figure is the median of the epochs after the first: 5 of them keep the no-cost loader's
# figure near its ceiling beside a CPU burner (2 did not).
EPOCHS = 6


def _of_ceiling(factory, workers):
    return measure_step_bound(_spec(factory, workers), epochs=EPOCHS, timeout_s=300, step_s=STEP_S)


def test_a_loader_slower_than_the_step_is_starved_and_threads_hide_it():
    one = _of_ceiling("support.planted:sleeps_per_batch", workers=1)
    # The model gets at most what the loader delivers on its own (measured in the same run); beside
    # a CPU burner the loader's Python competes with the step for a core: the lower bound is half.
    alone = measure_throughput(_spec("support.planted:sleeps_per_batch", workers=1), epochs=EPOCHS).samples_per_s
    predicted = min(alone, one.ceiling_samples_per_s) / one.ceiling_samples_per_s
    assert predicted / 2 < one.of_ceiling < predicted + 0.1
    four = _of_ceiling("support.planted:sleeps_per_batch", workers=4)  # four sleeps at once: 5 ms a batch
    # Starved: the same model took more from a faster loader, compared as the loaders' own samples/s,
    # not as a share of the ceiling (each ratio has its own ceiling run, and those move under load).
    assert four.of_ceiling > AT_CEILING and four.samples_per_s > 1.2 * one.samples_per_s


def test_a_loader_with_no_cost_is_at_the_ceiling():
    assert _of_ceiling("support.planted:plain", workers=1).of_ceiling > AT_CEILING
