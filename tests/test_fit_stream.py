"""What a real model.fit delivers, recorded by the tap, on every Keras backend
and on legacy Keras 2; the driver is checked against it."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from feedbench.fit import legacy as legacy_keras
from feedbench.run import legacy

pytestmark = [pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 2
LEGACY_QUEUE = 10  # tf_keras fit's max_queue_size default
LEGACY_BATCHES = 10  # legacy_stream's 160 samples in batches of 16

SCRIPT = textwrap.dedent(
    """
    import json
    from feedbench.core import procs
    from feedbench.fit import driver, tap
    from feedbench.generators import Spec, build

    before = procs.descendant_pids()
    out = {}
    for name, workers, mp in [("keyed", 1, False), ("keyed", 2, True), ("generator", 1, False),
                              ("tfdata", 1, False), ("seed_bounded", 2, False), ("shm", 2, True)]:
        spec = Spec(name, n_samples=100, batch_size=16, shuffle=True, workers=workers, use_multiprocessing=mp)
        stream = tap.fit_stream(build(spec), epochs=EPOCHS)
        driven = driver.run(build(spec), epochs=EPOCHS)
        by_driver = [[int(i) for b in driven if b.epoch == e for i in b.y[:, 1]] for e in range(EPOCHS)]
        out[f"{name}-{workers}-{mp}"] = {**stream.summary(100), "ids": stream.epochs,
                                         "driver_agrees": by_driver == stream.epochs}
    procs.assert_no_new_workers(before)
    print(json.dumps(out))
    """
).replace("EPOCHS", str(EPOCHS))


def _fit_streams(backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]


@pytest.fixture(scope="module")
def streams():
    return {backend: _fit_streams(backend) for backend in BACKENDS}


# Keras feeds these in one thread (shm's processes are its own): no pool for the build batch to shift.
SERIAL = ("keyed-1-False", "generator-1-False", "tfdata-1-False", "shm-2-True")
POOLED = ("keyed-2-True", "seed_bounded-2-False")  # Keras runs a worker pool for these


def test_fit_delivers_every_sample_once_per_epoch_on_every_backend(streams):
    for backend, runs in streams.items():
        names = SERIAL + (POOLED if backend == "tensorflow" else ())
        for name in names:
            epochs = runs[name]["epochs"]
            assert [e["samples"] for e in epochs] == [100] * EPOCHS, (backend, name)
            assert all(e["missing"] == 0 and e["duplicated"] == 0 for e in epochs), (backend, name)


def test_on_jax_and_torch_the_build_batch_shifts_a_pooled_stream_by_one_batch(streams):
    """A finding: jax and torch build the model on one batch from a worker pool that then
    goes on feeding; every epoch is batches 1.. of the dataset's epoch and batch 0 of the
    next one. With shuffling, samples go missing and repeat within an epoch."""
    from feedbench.generators.keying import epoch_order

    for backend in set(streams) - {"tensorflow"}:
        run = streams[backend]["keyed-2-True"]
        for epoch, ids in enumerate(run["ids"]):
            shifted = list(epoch_order(0, epoch, 100, True)[16:]) + list(epoch_order(0, epoch + 1, 100, True)[:16])
            assert ids == [int(i) for i in shifted], (backend, epoch)
            assert run["epochs"][epoch]["missing"] > 0 and run["epochs"][epoch]["duplicated"] > 0


def test_the_driver_delivers_what_fit_delivers(streams):
    for backend, runs in streams.items():
        for name, run in runs.items():
            if name.startswith("seed_"):
                continue  # fit(shuffle=True) orders these batches with Python's unseeded global random
            assert run["driver_agrees"], (backend, name)


def test_keyed_streams_are_the_same_on_every_backend(streams):
    reference = streams["tensorflow"]
    assert reference["shm-2-True"]["ids"] == reference["keyed-1-False"]["ids"]
    for backend, runs in streams.items():
        for name in ("keyed-1-False", "generator-1-False", "shm-2-True"):  # keyed by NumPy; tf.data's is TF's
            assert runs[name]["ids"] == reference[name]["ids"], (backend, name)


def test_epoch_hooks_fit_calls_on_each_backend(streams):
    """A finding: every backend calls on_epoch_end once more than there are epochs; jax and
    torch also call on_epoch_begin once more (the batch fit builds the model on)."""
    for backend, runs in streams.items():
        hooks = runs["keyed-2-True"]["hooks"]
        assert hooks["on_epoch_end"] == EPOCHS + 1, backend
        assert hooks["on_epoch_begin"] == EPOCHS + (0 if backend == "tensorflow" else 1), backend


needs_tf_keras = pytest.mark.skipif(
    not legacy_keras.available(), reason="tf_keras is not installed (pip install -e '.[legacy]')"
)


@needs_tf_keras
@pytest.mark.parametrize(
    "workers,multiprocessing",
    [pytest.param(1, False, marks=pytest.mark.long), pytest.param(2, False, marks=pytest.mark.long), (2, True)],
)
def test_legacy_keras_feeds_a_sequence_whole_under_every_setting(workers, multiprocessing, no_stray_workers):
    run = legacy.legacy_stream("sequence", workers, multiprocessing, epochs=EPOCHS)
    assert run["backend"].startswith("tf_keras 2.")
    assert all(e["samples"] == 160 and e["missing"] == 0 and e["duplicated"] == 0 for e in run["epochs"])
    # Keras 2: serially one on_epoch_end per epoch; with workers the enqueuer's thread calls it as it
    # runs ahead of fit, by at most its queue and the batches in flight (up to a few epochs more).
    if workers == 1 and not multiprocessing:
        assert run["hooks"] == {"on_epoch_end": EPOCHS}
    else:
        ahead = math.ceil((LEGACY_QUEUE + workers) / LEGACY_BATCHES)
        assert EPOCHS <= run["hooks"]["on_epoch_end"] <= EPOCHS + ahead


@needs_tf_keras
@pytest.mark.long  # the long tier: legacy Keras's other path
def test_legacy_keras_copies_a_generator_into_every_worker_process(no_stray_workers):
    """A finding: with use_multiprocessing, each worker runs its own copy of the generator,
    so the model receives the same samples several times and never sees others."""
    run = legacy.legacy_stream("generator", 2, True, epochs=2 * EPOCHS)
    assert all(e["samples"] == 160 for e in run["epochs"])
    # Which epoch shows it is a race (the second worker may start after the first filled epoch 1),
    # so the run has more epochs than the others here.
    assert any(e["duplicated"] > 0 and e["missing"] > 0 for e in run["epochs"]), run["epochs"]
    serial = legacy.legacy_stream("generator", 1, False, epochs=EPOCHS)
    assert all(e["missing"] == 0 and e["duplicated"] == 0 for e in serial["epochs"])


@needs_tf_keras
def test_legacy_keras_fails_a_generator_shared_by_threads_in_one_line(no_stray_workers):
    """Two threads pulling one generator: Keras 2 raises, or (seen too) the run hangs; either
    way the run ends with one line within its limit. The race is a race: on a loaded machine one
    run in many (seen once in a CI run beside a CPU burner) gets through without it, and then
    it has simply ended."""
    try:
        run = legacy.legacy_stream("generator", 2, False, epochs=EPOCHS, timeout_s=40)
    except Exception as exc:
        assert re.match(
            r"^legacy generator \(workers=2, use_multiprocessing=False\) (exceeded its time limit of 40 s"
            r"|failed: .*RuntimeError: Your generator is NOT thread-safe)",
            str(exc),
        ), str(exc)
    else:
        assert len(run["epochs"]) == EPOCHS
