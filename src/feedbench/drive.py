"""Feed any implementation exactly as ``model.fit`` feeds it, and always clean up.

The driver builds the active backend's own epoch iterator (``TFEpochIterator``,
``JAXEpochIterator`` or ``TorchEpochIterator``) over Keras's own data adapter,
with fit's arguments, and walks it in fit's order:

1. construct the iterator (the TensorFlow adapter reads batches 0 and 1 in the
   main process to infer the tensor spec);
2. on jax and torch, fit's symbolic build of a fresh model takes one batch
   (a whole ``on_epoch_begin``: with workers, a pool starts for it);
3. ``reset()``: the extra ``on_epoch_end`` before the first epoch;
4. for each epoch: ``on_epoch_begin``, one ``next()`` per step, ``on_epoch_end``.

It yields each delivered batch with the time it arrived. Whatever ends the run
(the end, an exception in the generator, a consumer that stops early, the
time limit), no worker process it started survives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from feedbench import procs
from feedbench.errors import BadDataset, DriveTimeout, FeedbenchError, GeneratorFailed
from feedbench.generators.spec import Built  # noqa: F401  (re-exported for callers)

DEFAULT_TIMEOUT_S = 300.0
# After the time limit, how long the driver waits for a data path stuck in
# native code (a tf.data iterator whose producer never returns) before it
# ends the process rather than hang.
STUCK_GRACE_S = float(os.environ.get("FEEDBENCH_STUCK_GRACE_S", "15"))
_TIMEOUT_SIGNAL = signal.SIGUSR1


@dataclass(slots=True)
class Batch:
    epoch: int  # 0-based, as fit counts
    step: int
    x: Any
    y: Any
    t: float  # time.perf_counter() when the batch reached the consumer


def backend() -> str:
    import keras

    return keras.backend.backend()


def drive(
    built: Built,
    epochs: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    materialize: bool = True,
) -> Iterator[Batch]:
    """Yield every batch ``fit`` would deliver over ``epochs`` epochs.

    ``materialize`` turns tensors into NumPy arrays (needed to look at the
    content); without it the consumer gets the backend's own tensors.
    Consume it with ``contextlib.closing`` (or to the end) so that an early
    stop cleans up at once.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} given; expected 1 or more")
    name = built.spec.impl
    keep = procs.descendant_pids()
    watchdog = _Watchdog(timeout_s, name)
    iterator = None
    where = None
    with _tracked_pools() as pools, watchdog.armed(pools):
        try:
            iterator = _epoch_iterator(built)
            if backend() in ("jax", "torch"):
                _first_batch(iterator)  # fit's symbolic build on a fresh model
            iterator.reset()  # the on_epoch_end fit calls before the first epoch
            # TensorFlow's adapter already holds every batch to the spec of the
            # first two; the other backends check nothing, so we do.
            check = _ShapeCheck(name) if backend() != "tensorflow" else None
            for epoch in range(epochs):
                with iterator.catch_stop_iteration():
                    for step, (_, _, data) in enumerate(iterator):
                        where = (epoch, step)  # formatted only if something fails
                        x, y = _unpack(_first_batch_of(data), materialize)
                        arrived = time.perf_counter()
                        if check:
                            check(x, y, where)
                        watchdog.check()
                        yield Batch(epoch, step, x, y, arrived)
                watchdog.check()
        except GeneratorExit:
            raise
        except FeedbenchError:
            raise
        except Exception as exc:
            if watchdog.fired:
                raise watchdog.error() from exc
            raise _explain(exc, name, _where(where)) from exc
        finally:
            _abort(iterator, pools)
            built.close()
            procs.reap(keep)


def run(built: Built, epochs: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, materialize: bool = True) -> list[Batch]:
    """All batches of a run, as a list."""
    with contextlib.closing(drive(built, epochs, timeout_s, materialize)) as batches:
        return list(batches)


@contextlib.contextmanager
def guarded(name: str, timeout_s: float = DEFAULT_TIMEOUT_S):
    """The driver's time limit and clean-up around code that feeds a dataset itself.

    For a real ``model.fit``: past ``timeout_s`` it raises DriveTimeout (or, if
    the data path is stuck in native code, ends the process with 124); an
    exception from the generator comes out as GeneratorFailed; either way no
    worker process started inside survives the block.
    """
    keep = procs.descendant_pids()
    watchdog = _Watchdog(timeout_s, name)
    with _tracked_pools() as pools, watchdog.armed(pools):
        try:
            yield
            watchdog.check()
        except FeedbenchError:
            raise
        except Exception as exc:
            if watchdog.fired:
                raise watchdog.error() from exc
            raise _explain(exc, name, "a model.fit step") from exc
        finally:
            _abort(None, pools)
            procs.reap(keep)


# --------------------------------------------------------------------------- fit's data path


def _epoch_iterator(built: Built):
    name = backend()
    kwargs = dict(x=built.dataset, steps_per_epoch=built.steps_per_epoch, shuffle=built.fit_shuffle)
    if name == "tensorflow":
        import tensorflow as tf
        from keras.src.backend.tensorflow.trainer import TFEpochIterator

        return TFEpochIterator(distribute_strategy=tf.distribute.get_strategy(), **kwargs)
    if name == "jax":
        from keras.src.backend.jax.trainer import JAXEpochIterator

        return JAXEpochIterator(**kwargs)
    if name == "torch":
        from keras.src.backend.torch.trainer import TorchEpochIterator

        return TorchEpochIterator(**kwargs)
    raise FeedbenchError(f"Keras backend {name!r} is active; feedbench drives tensorflow, jax or torch")


def _first_batch(iterator) -> None:
    """What fit's symbolic build does: take one batch, then leave the epoch open."""
    for _, _, data in iterator:
        _first_batch_of(data)
        break


def _first_batch_of(data):
    # fit hands its train step either a list of batches (jax, torch) or the
    # iterator itself (tensorflow), from which the step takes one.
    if isinstance(data, (list, tuple)):
        return data[0]
    return next(data)


def _where(position) -> str:
    return "start-up" if position is None else "epoch {} step {}".format(*position)


def _unpack(batch, materialize: bool):
    if isinstance(batch, dict):
        raise BadDataset("a batch is a dict; feedbench expects (x, y) tuples")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise BadDataset(
            f"a batch is a {type(batch).__name__} of {len(batch) if hasattr(batch, '__len__') else '?'} "
            "items; expected (x, y) or (x, y, sample_weight)"
        )
    x, y = batch[0], batch[1]
    if materialize:
        x, y = np.asarray(x), np.asarray(y)
    return x, y


class _ShapeCheck:
    """Batches may differ in length, never in sample shape or dtype."""

    def __init__(self, name: str):
        self.name = name
        self.first = None

    def __call__(self, x, y, where) -> None:
        seen = (tuple(x.shape[1:]), str(x.dtype), tuple(y.shape[1:]), str(y.dtype))
        if self.first is None:
            self.first = seen
            return
        if seen != self.first:
            raise BadDataset(
                f"{self.name}: batch at {_where(where)} has x {_shape(seen[:2])}, y {_shape(seen[2:])}; "
                f"expected x {_shape(self.first[:2])}, y {_shape(self.first[2:])} as in the first batch"
            )


def _shape(pair) -> str:
    dims, dtype = pair
    return f"(batch, {', '.join(map(str, dims))}) {dtype}" if dims else f"(batch,) {dtype}"


def _explain(exc: BaseException, name: str, where: str) -> FeedbenchError:
    text = _one_line(exc)
    if "element of shape" in text or "shape" in text and "expected" in text:
        return BadDataset(f"{name}: batches change shape at {where}: {text}")
    if "length 0" in text or "at least one batch" in text:
        return BadDataset(f"{name}: the dataset is empty ({text}); expected at least one batch")
    return GeneratorFailed(f"{name} raised at {where}: {text}")


def _one_line(exc: BaseException) -> str:
    """The innermost 'SomeError: message' line, also out of TensorFlow's wrapped errors."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):  # the original Python error comes last in a TF traceback dump
        head = line.split(":", 1)[0].split()[-1] if ":" in line else ""
        if head.endswith(("Error", "Exception", "Interrupt", "Exit")) and not line.startswith("File "):
            return line.split("}}", 1)[-1].strip()
    first = lines[0].split("}}", 1)[-1].strip() if lines else ""
    return f"{type(exc).__name__}: {first}"


# --------------------------------------------------------------------------- clean-up


@contextlib.contextmanager
def _tracked_pools():
    """Record every worker pool Keras creates during the run (threads and processes)."""
    from keras.src.trainers.data_adapters import py_dataset_adapter as keras_pda

    created: list = []
    original = keras_pda.get_pool_class

    def tracking_pool_class(use_multiprocessing):
        pool_class = original(use_multiprocessing)

        def make(*args, **kwargs):
            pool = pool_class(*args, **kwargs)
            created.append(pool)
            return pool

        return make

    keras_pda.get_pool_class = tracking_pool_class
    try:
        yield created
    finally:
        keras_pda.get_pool_class = original


def _fail_pending(pools, error: BaseException) -> None:
    """Complete every pending pool result with ``error`` so no Keras thread waits forever."""
    for pool in list(pools):
        cache = getattr(pool, "_cache", {})
        for result in list(cache.values()):
            with contextlib.suppress(Exception):
                result._set(0, (False, error))


def _abort(iterator, pools) -> None:
    """Stop Keras's enqueuer and pools without waiting on a batch that may never come."""
    enqueuer = getattr(getattr(iterator, "data_adapter", None), "enqueuer", None)
    if enqueuer is not None and enqueuer.is_running():
        _fail_pending(pools, GeneratorFailed("run stopped"))
        enqueuer.running = False
        _drain(enqueuer.future_queue)  # unblocks the enqueuer thread's put()
        if enqueuer.run_thread is not None:
            enqueuer.run_thread.join(timeout=5)
            _drain(enqueuer.future_queue)
    terminator = threading.Thread(target=_terminate_all, args=(list(pools),), daemon=True)
    terminator.start()
    terminator.join(timeout=10)
    if iterator is not None and getattr(iterator, "data_adapter", None) is not None:
        with contextlib.suppress(Exception):
            iterator.data_adapter._within_epoch = False


def _drain(q) -> None:
    import queue

    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def _terminate_all(pools) -> None:
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.terminate()


# --------------------------------------------------------------------------- the time limit


# Frames from these files mean a thread is producing batches for the data
# path: a tf.data py_function thread, or a Keras enqueuer or pool thread.
_DATA_PATH_FILES = (
    os.path.join("tensorflow", "python", "ops", "script_ops.py"),
    os.path.join("keras", "src", "trainers", "data_adapters"),
)


def _interrupt_data_threads() -> None:
    """Raise DriveTimeout inside every thread now running data-path Python code.

    A producer thread owned by TensorFlow cannot be signalled, but it can be
    handed an asynchronous exception, which it raises at its next bytecode:
    that ends a generator stuck in a Python loop, and tf.data then reports the
    error to the main thread waiting in native code.
    """
    import ctypes

    me = threading.get_ident()
    main = threading.main_thread().ident
    for ident, frame in sys._current_frames().items():
        if ident in (me, main):
            continue
        stack = []
        while frame is not None:
            stack.append(frame.f_code.co_filename)
            frame = frame.f_back
        if any(marker in path for path in stack for marker in _DATA_PATH_FILES):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(DriveTimeout))


class _Watchdog:
    """Ends a run that exceeds its time limit with a clear error, never a hang.

    At the limit it fails every pending pool result (which wakes a consumer
    waiting on a worker), signals the main thread (which wakes one sleeping
    in the generator's own code) and raises inside data-path threads. If the
    data path is stuck in native code and does not come back within
    ``STUCK_GRACE_S``, it kills the workers and ends the process with exit
    status 124 and a one-line message.
    """

    def __init__(self, timeout_s: float, name: str):
        self.timeout_s = timeout_s
        self.name = name
        self.fired = False
        self._done = threading.Event()

    def error(self) -> DriveTimeout:
        return DriveTimeout(f"{self.name}: run exceeded its time limit of {self.timeout_s:g} s")

    def check(self) -> None:
        if self.fired:
            raise self.error()

    @contextlib.contextmanager
    def armed(self, pools):
        keep = procs.descendant_pids()
        in_main = threading.current_thread() is threading.main_thread()
        previous = None
        if in_main:
            previous = signal.signal(_TIMEOUT_SIGNAL, self._on_signal)
        thread = threading.Thread(target=self._watch, args=(pools, in_main, keep), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._done.set()
            if in_main:
                signal.signal(_TIMEOUT_SIGNAL, previous)

    def _on_signal(self, signum, frame):
        if self.fired and not self._done.is_set():
            raise self.error()

    def _watch(self, pools, in_main: bool, keep: set[int]) -> None:
        if self._done.wait(self.timeout_s):
            return
        self.fired = True
        _fail_pending(pools, self.error())
        if in_main:
            signal.pthread_kill(threading.main_thread().ident, _TIMEOUT_SIGNAL)
        _interrupt_data_threads()
        if self._done.wait(STUCK_GRACE_S):
            return
        procs.reap(keep)
        sys.stderr.write(
            f"feedbench: {self.error()}, and its data path did not return within "
            f"{STUCK_GRACE_S:g} s more; ending the process\n"
        )
        sys.stderr.flush()
        os._exit(124)
