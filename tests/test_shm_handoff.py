"""shm's hand-off thread: the next batch converted ahead while the step runs, the stream unchanged."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from dataclasses import replace

import numpy as np
import pytest

from feedbench.fit import tap
from feedbench.generators import Spec, build
from feedbench.generators.shm_handoff import HandOff, device_converter

STEP_S = 0.03


class _Source:
    """A ring stand-in: batch k is k; every fetch is counted."""

    def __init__(self):
        self.fetched = []

    def fetch(self, key):
        self.fetched.append(key)
        return key


def _slow_convert(batch):
    time.sleep(STEP_S)  # a transfer: the GIL is released while it runs
    return ("on device", batch)


def _consume(n: int, ahead: HandOff | None, source: _Source) -> float:
    """n steps of STEP_S, each fed batch k; returns the seconds they took."""
    start = time.perf_counter()
    for k in range(n):
        batch = ahead.take(k) if ahead else None
        if batch is None:
            batch = _slow_convert(source.fetch(k))
        assert batch == ("on device", k)
        if ahead and k + 1 < n:
            ahead.start(k + 1)
        time.sleep(STEP_S)  # the model's step
    return time.perf_counter() - start


def test_the_transfer_of_the_next_batch_overlaps_the_step():
    source = _Source()
    ahead = HandOff(weakref.WeakMethod(source.fetch), _slow_convert)
    try:
        overlapped = _consume(20, ahead, source)
    finally:
        ahead.stop()
    serial = _consume(20, None, _Source())
    # Serial: 20 x (transfer + step); overlapped: about 20 x step. Both measured here, now.
    assert overlapped < 0.8 * serial, (overlapped, serial)
    assert source.fetched == list(range(20))  # every batch fetched once, in order


def test_a_superseded_batch_is_not_served_for_another_key():
    source = _Source()
    ahead = HandOff(weakref.WeakMethod(source.fetch), _slow_convert)
    try:
        ahead.start(5)
        ahead.start(7)  # the consumer moved on (a new epoch, an out-of-order request)
        assert ahead.take(5) is None
        assert ahead.take(7) == ("on device", 7)
        assert ahead.take(7) is None  # served once
    finally:
        ahead.stop()


def test_an_error_in_the_hand_off_reaches_the_consumer_asking_for_that_batch():
    def fetch(key):
        raise RuntimeError(f"worker died at {key}")

    holder = type("Holder", (), {"fetch": staticmethod(fetch)})()
    ahead = HandOff(lambda: holder.fetch, _slow_convert)
    try:
        ahead.start(3)
        with pytest.raises(RuntimeError, match="worker died at 3"):
            ahead.take(3)
    finally:
        ahead.stop()


def test_the_thread_ends_with_its_dataset():
    source = _Source()
    ahead = HandOff(weakref.WeakMethod(source.fetch), _slow_convert)
    ahead._IDLE_S = 0.05
    ahead.start(0)
    assert ahead.take(0) == ("on device", 0)
    thread = ahead._thread
    del source
    thread.join(5)
    assert not thread.is_alive()


def test_a_bad_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("FEEDBENCH_SHM_HAND_OFF", "yes")
    with pytest.raises(ValueError, match=r"^FEEDBENCH_SHM_HAND_OFF='yes' given; expected one of auto, on, off$"):
        device_converter()


def test_only_jax_gets_a_hand_off(monkeypatch):
    import keras

    monkeypatch.setenv("FEEDBENCH_SHM_HAND_OFF", "on")
    if keras.backend.backend() != "jax":
        assert device_converter() is None  # TensorFlow's adapter prefetches in its own thread already


@pytest.mark.slow
def test_shm_with_the_hand_off_delivers_keyeds_stream_under_fit_and_leaves_nothing(no_stray_workers):
    """The hand-off forced on (a host copy standing in for the transfer) under fit(shuffle=True)."""
    spec = Spec("shm", n_samples=160, batch_size=16, workers=2, use_multiprocessing=True, shuffle=True)
    built = build(spec)
    built.fit_shuffle = True
    dataset = built.dataset
    threads = []

    def copy_out(batch):
        threads.append(threading.current_thread().name)
        return tuple(np.array(part) for part in batch)

    dataset._convert = copy_out
    dataset._ahead = HandOff(weakref.WeakMethod(dataset._fetch_ahead), copy_out)
    reference = build(replace(spec, impl="keyed", workers=1, use_multiprocessing=False))
    got = tap.fit_stream(built, epochs=2, timeout_s=120)
    expected = tap.fit_stream(reference, epochs=2, timeout_s=120)
    assert got.epochs == expected.epochs and len(got.epochs[0]) == 160
    # 10 batches an epoch: the first of each is fetched on request, the other 9 ahead.
    assert threads.count("feedbench-shm-hand-off") >= 2 * 9 - 2, threads
    assert not (dataset._ahead._thread and dataset._ahead._thread.is_alive())  # stopped with the run


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_on_jax_shm_serves_device_arrays_and_the_same_stream():
    script = textwrap.dedent(
        """
        from dataclasses import replace
        import jax
        from feedbench.fit import tap
        from feedbench.generators import Spec, build
        spec = Spec("shm", n_samples=160, batch_size=16, workers=2, use_multiprocessing=True, shuffle=True)
        shuffled_by_fit = build(spec)
        shuffled_by_fit.fit_shuffle = True
        dataset = shuffled_by_fit.dataset
        assert dataset._ahead is not None
        dataset.on_epoch_begin()
        assert all(isinstance(part, jax.Array) for part in dataset[0]), type(dataset[0][0])
        dataset.on_epoch_end()
        dataset.close()
        reference = build(replace(spec, impl="keyed", workers=1, use_multiprocessing=False))
        again = build(spec)
        again.fit_shuffle = True
        got = tap.fit_stream(again, epochs=2, timeout_s=120)
        expected = tap.fit_stream(reference, epochs=2, timeout_s=120)
        assert got.epochs == expected.epochs and len(got.epochs[0]) == 160, (got.epochs, expected.epochs)
        print("same stream")
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", FEEDBENCH_SHM_HAND_OFF="on")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "same stream" in proc.stdout, proc.stderr[-3000:]
