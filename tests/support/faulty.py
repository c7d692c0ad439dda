"""Generators that fail the way real ones do, for the fault-injection tests (tests/test_faults.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from support.planted import Plain, factory  # slices copied out of the source, traced: no flaw of its own

_PARENT = os.getpid()
AT = 3


class WorkerDies(Plain):
    """A worker process that dies at one batch, as a crash, an abort or the OOM killer would end it."""

    how = "exit"

    def __getitem__(self, idx):
        if idx == AT and os.getpid() != _PARENT:
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), getattr(signal, self.how))
        return super().__getitem__(idx)


worker_exits = factory(WorkerDies)


def worker_killed(spec, source):
    dataset = WorkerDies(spec, source)
    dataset.how = "SIGKILL"
    return dataset


def worker_aborts(spec, source):
    dataset = WorkerDies(spec, source)
    dataset.how = "SIGABRT"
    return dataset


RELEASE_STALLED_THREADS = threading.Event()  # set by a test after the run: threads cannot be killed


class WorkerStalls(Plain):
    """Every Keras worker (process or thread), from one batch on, waits for something that never
    comes (a deadlock: no CPU, no batch); or, where ``busy`` is set, computes for that long instead
    (slow but working: never a stall)."""

    busy_s = 0.0

    def __getitem__(self, idx):
        in_a_process = os.getpid() != _PARENT
        if idx >= AT and (in_a_process or threading.current_thread() is not threading.main_thread()):
            if not self.busy_s:
                (threading.Event() if in_a_process else RELEASE_STALLED_THREADS).wait()
            _compute_for(self.busy_s, time.process_time if in_a_process else time.thread_time)
        return super().__getitem__(idx)


def _compute_for(seconds: float, clock) -> None:
    """CPU seconds of this worker (``clock``: its process's or its thread's): a loaded machine makes
    it slower, not shorter."""
    end = clock() + seconds
    while clock() < end:
        pass


worker_deadlocks = factory(WorkerStalls)


def worker_computes_for_3_s(spec, source):
    return _busy(WorkerStalls(spec, source), 3.0)


def _with(dataset, **attributes):
    """The dataset with class-level switches set on the instance (forked workers inherit them)."""
    for name, value in attributes.items():
        setattr(dataset, name, value)
    return dataset


def _busy(dataset, seconds: float):
    dataset.busy_s = seconds
    return dataset


DEADLOCK_ONCE_MARKER = "FAULTY_DEADLOCK_ONCE_MARKER"  # environment: a file that exists once a worker deadlocked


class DeadlocksOnceInAFork(Plain):
    """A forked worker deadlocks at one batch, in the first run only (the marker file records it),
    (in any process: the file is named in the environment), as a worker running TensorFlow after a
    fork does now and then; with ``tensorflow`` it runs a
    TensorFlow op (an identity) on every batch first, as such a worker does."""

    tensorflow = False

    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        if self.tensorflow:
            import tensorflow as tf

            x = tf.identity(x).numpy()
        if idx == AT and os.getpid() != _PARENT:
            try:
                os.close(os.open(os.environ[DEADLOCK_ONCE_MARKER], os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return x, y
            threading.Event().wait()
        return x, y


class DeadlocksAfterTensorflowInAFork(DeadlocksOnceInAFork):
    """Forked workers run TensorFlow on every batch, and the one that gets batch AT deadlocks, in every run."""

    tensorflow = True

    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        if idx == AT and os.getpid() != _PARENT:
            threading.Event().wait()
        return x, y


deadlocks_after_tensorflow_in_a_fork = factory(DeadlocksAfterTensorflowInAFork)


deadlocks_once_in_a_fork = factory(DeadlocksOnceInAFork)


def deadlocks_once_after_tensorflow_in_a_fork(spec, source):
    return _with(DeadlocksOnceInAFork(spec, source), tensorflow=True)


def factory_raises(spec, source):
    raise RuntimeError("the factory's own bug")


class LenRaises(Plain):
    def __len__(self):
        raise KeyError("n_samples")


class LenFloat(Plain):
    def __len__(self):
        return len(self.x) / self.bs


class XYMismatch(Plain):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        return x, y[:-1]


class EmptyBatch(Plain):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        return (x[:0], y[:0]) if idx == AT else (x, y)


len_raises = factory(LenRaises)


len_float = factory(LenFloat)


xy_mismatch = factory(XYMismatch)


empty_batch = factory(EmptyBatch)


class StartsAHelper(Plain):
    """A worker that starts a helper process at one batch; ``leaves`` says whether it is left
    running (a daemon nobody stops) or waited for (what a clean generator does)."""

    leaves = True

    def __getitem__(self, idx):
        if idx == AT and os.getpid() != _PARENT:
            command = [sys.executable, "-c", "import time; time.sleep(600)", os.environ["FAULTY_MARK"]]
            if self.leaves:
                subprocess.Popen(command, stdin=subprocess.DEVNULL)
            else:
                subprocess.run([*command[:2], "pass", command[3]], check=True)
        return super().__getitem__(idx)


worker_leaves_a_daemon = factory(StartsAHelper)


def worker_waits_for_its_helper(spec, source):
    return _with(StartsAHelper(spec, source), leaves=False)


class ConvertsAFunction(Plain):
    """Runs each batch through a ``tf.function``: TensorFlow's AutoGraph writes the converted source
    to the temporary folder (``__autograph_generated_file*.py``) and removes it only when the
    interpreter exits normally, which a pool worker or an ``os._exit`` never does."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        import tensorflow as tf

        @tf.function
        def scaled(x):
            if tf.reduce_max(x) > 1.0:  # a Python branch: AutoGraph converts it
                return x / tf.reduce_max(x)
            return x

        self.scaled = scaled

    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        return self.scaled(x).numpy(), y


converts_a_function = factory(ConvertsAFunction)


class SleepsInNativeCode(Plain):
    """Never returns from one batch; touches the file named by FAULTY_STUCK_MARK first, so a test
    knows the run's main thread is now waiting inside the backend's iterator."""

    def __getitem__(self, idx):
        if idx == AT:
            with open(os.environ["FAULTY_STUCK_MARK"], "w"):
                pass
            time.sleep(3600)
        return super().__getitem__(idx)


sleeps_in_native_code = factory(SleepsInNativeCode)


STOP_WAITING = threading.Event()  # never set in a command's process: the stall watch interrupts the poll


class ProducerWaits(Plain):
    """From one batch on, the producer, whatever runs it (the one thread of a PyDataset without
    workers included), polls for something that never comes: Python code, little CPU, no batch.
    Where ``busy_s`` is set it computes for that long instead (slow but working: never a stall)."""

    busy_s = 0.0

    def __getitem__(self, idx):
        if idx >= AT:
            if not self.busy_s:
                while not STOP_WAITING.is_set():
                    time.sleep(0.05)
            _compute_for(self.busy_s, time.thread_time)
        return super().__getitem__(idx)


producer_waits = factory(ProducerWaits)


def producer_computes_for_3_s(spec, source):
    return _busy(ProducerWaits(spec, source), 3.0)
