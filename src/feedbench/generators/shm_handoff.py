"""shm's hand-off: the next batch taken out of the ring and put on the device by a thread of its own.

On a GPU the consuming process's share of each step is the hand-off. Keras's jax trainer puts every
batch on the device in the thread that runs the steps, so each transfer adds to the step: on an
H100 ``shm`` fed jax at 0.54x the one-cached-batch ceiling while its workers had capacity to spare
(docs/gpu.md). With the hand-off on, while the model runs step k the batch of step k+1 is
taken out of the ring and transferred here, and ``shm`` serves arrays already on the device (Keras
passes a ``jax.Array`` through untouched).

It is on (``auto``) where it helps: the jax backend on an accelerator. TensorFlow's adapter
already prefetches in a thread of its own, torch reached the ceiling without it, and on a CPU
device there is no transfer to hide. ``FEEDBENCH_SHM_HAND_OFF=on`` turns it on for jax on any
device (how the tests run it here), ``off`` turns it off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from feedbench.core import settings


def device_converter() -> Callable | None:
    """What puts a batch on the device ahead of its step, or None where the hand-off is off."""
    setting = settings.current().shm_hand_off
    if setting == "off":
        return None
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    if setting == "auto" and jax.default_backend() == "cpu":
        return None

    on_cpu = jax.default_backend() == "cpu"

    def to_device(batch):
        if on_cpu:  # a CPU device may alias the host buffer, and that buffer is a ring slot
            batch = jax.tree_util.tree_map(np.array, batch)
        arrays = jax.device_put(batch)
        # Done before the ring slot's views are dropped: the slot is rewritten once they are gone.
        jax.block_until_ready(arrays)
        return arrays

    return to_device


class HandOff:
    """One batch ahead, in a daemon thread: ``start(key)`` fetches and converts the batch at
    ``key``; ``take(key)`` returns it (waiting for it if need be), or None when it was not started
    or could not be had (the dataset closed: the caller then gets it itself).

    ``fetch`` is a ``weakref.WeakMethod`` of the dataset's: the thread must not keep the dataset
    alive (its finalizer stops the workers); once the dataset is gone the thread ends.
    """

    _IDLE_S = 1.0  # how often an idle thread checks that its dataset still exists

    def __init__(self, fetch, convert: Callable):
        self._fetch = fetch
        self._convert = convert
        self._cond = threading.Condition()
        self._wanted = None  # the key to fetch next
        self._busy = None  # the key being fetched now
        self._ready = None  # (key, batch, error) of the last fetch that was not superseded
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self, key) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, daemon=True, name="feedbench-shm-hand-off")
                self._thread.start()
            self._wanted, self._ready = key, None
            self._cond.notify_all()

    def take(self, key):
        with self._cond:
            while True:
                if self._ready is not None and self._ready[0] == key:
                    _, batch, error = self._ready
                    self._ready = None
                    if error is not None:
                        raise error
                    return batch
                if self._stop or key not in (self._wanted, self._busy):
                    return None
                self._cond.wait(0.1)  # short: a time-limit signal to this thread is handled promptly

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (it notices within one poll of the ring); a later ``start`` makes a new one."""
        with self._cond:
            self._stop, self._wanted, self._ready = True, None, None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._wanted is None and not self._stop:
                    self._cond.wait(self._IDLE_S)
                    if self._fetch() is None:  # the dataset is gone
                        return
                if self._stop:
                    return
                key, self._wanted, self._busy = self._wanted, None, self._wanted
            batch = error = None
            try:
                fetch = self._fetch()
                views = None if fetch is None else fetch(key)
                del fetch
                batch = None if views is None else self._convert(views)
                del views
            except BaseException as exc:  # the consumer raises it when it asks for this batch
                error = exc
            with self._cond:
                self._busy = None
                if self._wanted is None and not self._stop:  # not superseded by a newer request
                    self._ready = (key, batch, error)
                self._cond.notify_all()
