"""Generators with one known flaw each, used as plug-in factories by the tests.

They live in tests/, never in src/: feedbench must catch them, not ship them.
Each is a factory(spec, source), the plug-in signature.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import keras
import numpy as np

from feedbench.generators.keyed import KeyedDataset

FAIL_AT = 3


class _Planted(KeyedDataset):
    def __init__(self, spec, source, **extra):
        super().__init__(source, spec.batch_size, spec.seed, spec.shuffle, spec.work, **spec.parallel_settings())
        for key, value in extra.items():
            setattr(self, key, value)


class Raising(_Planted):
    def __getitem__(self, idx):
        if idx == FAIL_AT:
            raise ValueError(f"planted failure at index {idx}")
        return super().__getitem__(idx)


class Hanging(_Planted):
    """Waits forever at one index, in short sleeps as a polling loop would."""

    def __getitem__(self, idx):
        if idx == FAIL_AT:
            while True:
                time.sleep(0.05)
        return super().__getitem__(idx)


class ShapeShifting(_Planted):
    def __getitem__(self, idx):
        x, y = super().__getitem__(idx)
        if idx == FAIL_AT:
            x = x[:, :-4]
        return x, y


class Empty(keras.utils.PyDataset):
    def __len__(self):
        return 0

    def __getitem__(self, idx):
        raise IndexError(idx)


def raising(spec, source):
    return Raising(spec, source)


def hanging(spec, source):
    return Hanging(spec, source)


def shape_shifting(spec, source):
    return ShapeShifting(spec, source)


def empty(spec, source):
    return Empty()


def not_a_dataset(spec, source):
    return {"x": source.x}


def plain_generator(spec, source):
    """A user's own generator, endless, of plain slices."""

    def batches():
        while True:
            for i in range(math.ceil(source.n / spec.batch_size)):
                rows = slice(i * spec.batch_size, (i + 1) * spec.batch_size)
                yield np.array(source.x[rows]), source.y[rows]

    return batches()


NOT_CALLABLE = 42


# --------------------------------------------------------------------------- planted flaws for the analyzers


class Plain(keras.utils.PyDataset):
    """Traced, unshuffled, unaugmented slices copied out of the source: no flaw."""

    def __init__(self, spec, source):
        super().__init__(**spec.parallel_settings())
        self.x, self.y, self.bs = source.x, source.y, spec.batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def batch(self, idx):
        rows = slice(idx * self.bs, (idx + 1) * self.bs)
        return np.array(self.x[rows]), np.array(self.y[rows])

    def __getitem__(self, idx):
        return self.batch(idx)


class RepeatsBatch0(Plain):
    def __getitem__(self, idx):
        return self.batch(0 if idx == FAIL_AT else idx)


class DropsABatch(Plain):
    def __len__(self):
        return super().__len__() - 1

    def __getitem__(self, idx):
        return self.batch(idx if idx < FAIL_AT else idx + 1)


class Reorders(Plain):
    def __getitem__(self, idx):
        swap = {FAIL_AT: FAIL_AT + 1, FAIL_AT + 1: FAIL_AT}
        return self.batch(swap.get(idx, idx))


class ReseedsConstant(Plain):
    def __getitem__(self, idx):
        np.random.seed(7)
        x, y = self.batch(idx)
        return x + np.random.uniform(-0.1, 0.1, len(x)).astype(np.float32)[:, None, None, None], y


class GlobalNumpyRng(Plain):
    def __getitem__(self, idx):
        x, y = self.batch(idx)
        return x + np.random.uniform(-0.1, 0.1, len(x)).astype(np.float32)[:, None, None, None], y


class WritesIntoView(Plain):
    def __getitem__(self, idx):
        view = self.x[idx * self.bs : (idx + 1) * self.bs]
        view[:, 0, 0, 0] = -1.0  # a "normalization" written back through the view
        return np.array(view), np.array(self.y[idx * self.bs : (idx + 1) * self.bs])


WORKER_BUFFER_BYTES = 256 << 20
_PARENT = os.getpid()
_KEPT = []


class BigWorkerBuffer(Plain):
    """Each forked worker allocates and keeps a large buffer."""

    def __getitem__(self, idx):
        if os.getpid() != _PARENT and not _KEPT:
            _KEPT.append(np.ones(WORKER_BUFFER_BYTES // 8))  # touched: really resident
        time.sleep(0.05)  # slow enough that both workers get batches
        return self.batch(idx)


LEAK_BYTES_PER_BATCH = 2 << 20
_LEAKED = []


class LeakyWorkers(Plain):
    def __getitem__(self, idx):
        _LEAKED.append(np.ones(LEAK_BYTES_PER_BATCH // 8))
        return self.batch(idx)


class SpikesInOneEpoch(Plain):
    """Holds a large buffer for a moment in its first epoch only (threads: one process)."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.calls = 0

    def __getitem__(self, idx):
        self.calls += 1
        if self.calls == 1:
            spike = np.ones(WORKER_BUFFER_BYTES // 8)  # touched: really resident, freed on return
            time.sleep(0.2)  # several of the memory sampler's readings
            del spike
        return self.batch(idx)


SLEEP_S = 0.02


class SleepsPerBatch(Plain):
    def __getitem__(self, idx):
        time.sleep(SLEEP_S)
        return self.batch(idx)


class ScaledByWorkers(Plain):
    """Reproducible, but each worker setting delivers other bytes: differs from the serial reference."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.scale = spec.workers

    def __getitem__(self, idx):
        x, y = self.batch(idx)
        return x * self.scale, y


class TensorflowInWorker(Plain):
    """Runs a TensorFlow op on every batch (an identity: the stream is unchanged): in forked
    workers that is the fork hazard, with threads or serially nothing."""

    def __getitem__(self, idx):
        import tensorflow as tf

        x, y = self.batch(idx)
        return tf.identity(x).numpy(), y


class _ReadsTheHandleWhenFreed:
    """Stands for a TensorFlow object whose finalizer reads the eager context's handle, as a traced
    tf.function's does (AtomicFunction.__del__ -> remove_function), without running TensorFlow in
    the forked child (which can hang there at random: a test must not)."""

    def __del__(self):
        from tensorflow.python.eager import context

        context.context()._handle  # noqa: B018  (the read is the point)


class FreesTensorflowObjectsInWorkers(Plain):
    """NumPy only; but each forked worker frees objects the parent made before the fork whose
    finalizers read TensorFlow's context (one by reference count, one held in a reference cycle by
    the garbage collector): TensorFlow's clean-up, not the generator's op."""

    def __init__(self, spec, source):
        import tensorflow as tf

        super().__init__(spec, source)
        tf.constant(0.0)  # this process's TensorFlow runtime has started
        cycle = {"object": _ReadsTheHandleWhenFreed()}
        cycle["self"] = cycle
        self.held = [_ReadsTheHandleWhenFreed(), cycle]
        self.built_in = os.getpid()

    def __getitem__(self, idx):
        if os.getpid() != self.built_in and self.held:
            self.held.clear()  # one goes at once, the other at the collection below
            import gc

            gc.collect()
        return self.batch(idx)


def factory(cls):
    """The plug-in factory(spec, source) of a dataset class taking (spec, source)."""
    return lambda spec, source: cls(spec, source)


plain = factory(Plain)
repeats_batch0 = factory(RepeatsBatch0)
drops_a_batch = factory(DropsABatch)
reorders = factory(Reorders)
reseeds_constant = factory(ReseedsConstant)
global_numpy_rng = factory(GlobalNumpyRng)
writes_into_view = factory(WritesIntoView)
big_worker_buffer = factory(BigWorkerBuffer)
leaky_workers = factory(LeakyWorkers)
spikes_in_one_epoch = factory(SpikesInOneEpoch)
sleeps_per_batch = factory(SleepsPerBatch)
scaled_by_workers = factory(ScaledByWorkers)
tensorflow_in_worker = factory(TensorflowInWorker)
frees_tensorflow_objects_in_workers = factory(FreesTensorflowObjectsInWorkers)


class EndsItsProcess(Plain):
    """Takes the measuring process down, as a crash in native code would."""

    def __getitem__(self, idx):
        if idx == FAIL_AT:
            os._exit(3)
        return self.batch(idx)


ends_its_process = factory(EndsItsProcess)


class StuckInNativeCode(Plain):
    """Never returns to Python from one batch (a sleep in C stands for a long BLAS call)."""

    def __getitem__(self, idx):
        if idx == 2:
            time.sleep(3600)
        return self.batch(idx)


stuck_in_native_code = factory(StuckInNativeCode)


class Recorder(keras.utils.PyDataset):
    """Records the order of Keras's calls: fit's order is the reference."""

    def __init__(self, events, **kwargs):
        super().__init__(**kwargs)
        self.events = events

    def __len__(self):
        return 3

    def __getitem__(self, idx):
        self.events.append(f"get{idx}")
        return np.full((2, 4), idx, np.float32), np.zeros((2, 1), np.float32)

    def on_epoch_begin(self):
        self.events.append("begin")

    def on_epoch_end(self):
        self.events.append("end")


# --------------------------------------------------------------------------- planted flaws for training


class MisalignedLabels(Plain):
    """Rolls the samples of each batch but not their labels: the classic separate-shuffle bug."""

    def __getitem__(self, idx):
        x, y = self.batch(idx)
        return np.roll(x, 1, axis=0), y


misaligned_labels = factory(MisalignedLabels)


# --------------------------------------------------------------------------- planted flaws for shm's workers


class FailsOnThirdBatch:
    """A workload that raises in the third batch a process computes (shm calls work.apply in its workers)."""

    name = "copy"
    calls = 0

    def apply(self, x):
        FailsOnThirdBatch.calls += 1
        if FailsOnThirdBatch.calls == 3:
            raise ValueError("planted failure in a worker")
        return x


class SlowWork:
    name = "copy"

    def apply(self, x):
        time.sleep(0.05)
        return x


class GatedFlips(Plain):
    """Augmentation switched on per batch (a coin per batch), then a flip per sample, keyed per batch:
    the batches left as they are must not read as repeated draws."""

    def __getitem__(self, idx):
        x, y = self.batch(idx)
        rng = np.random.default_rng([7, idx, self.epoch])
        if rng.random() < 0.5:
            flips = rng.random(len(x)) < 0.5
            x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
        return x, y

    epoch = 0

    def on_epoch_end(self):
        self.epoch += 1


gated_flips = factory(GatedFlips)


# --------------------------------------------------------------------------- planted leaks, each with its clean twin


class KeepsEveryBatch(Plain):
    """Keeps a reference to every batch it returns (a history nobody reads): memory grows every
    epoch where the dataset lives on (threads, serial); forked workers keep theirs until the pool ends."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.history = []

    def __getitem__(self, idx):
        batch = self.batch(idx)
        self.history.append(batch)
        return batch


class KeepsTheLastBatch(KeepsEveryBatch):
    """The clean twin: a cache of one batch, replaced every call."""

    def __getitem__(self, idx):
        batch = self.batch(idx)
        self.history[:] = [batch]
        return batch


class _StopsOnClose(Plain):
    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.stop = threading.Event()

    def close(self):
        self.stop.set()


class StartsAThreadEachEpoch(_StopsOnClose):
    """A helper thread per epoch (a prefetcher, a logger) that is never stopped."""

    def on_epoch_end(self):
        threading.Thread(target=self.stop.wait, name="planted-helper", daemon=True).start()


class ReplacesItsThreadEachEpoch(_StopsOnClose):
    """The clean twin: the helper of the last epoch is stopped and joined before the next starts."""

    helper = None
    ended = None

    def on_epoch_end(self):
        if self.helper is not None:
            self.ended.set()
            self.helper.join()
        self.ended = threading.Event()
        self.helper = threading.Thread(target=self.ended.wait, name="planted-helper", daemon=True)
        self.helper.start()

    def close(self):
        super().close()
        if self.ended is not None:
            self.ended.set()


class OpensAFileEachBatch(Plain):
    """Opens its data file in __getitem__ and keeps the handle: a descriptor per batch."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.handles = []

    def __getitem__(self, idx):
        handle = open(os.devnull, "rb")  # noqa: SIM115 (the leak is the point)
        handle.read(1)
        self.handles.append(handle)
        return self.batch(idx)

    def close(self):
        for handle in self.handles:
            handle.close()


class ClosesItsFileEachBatch(Plain):
    """The clean twin: the same read, in a with block."""

    def __getitem__(self, idx):
        with open(os.devnull, "rb") as handle:
            handle.read(1)
        return self.batch(idx)


class StartsAProcessEachEpoch(Plain):
    """Starts a helper process per epoch and never waits for it."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.helpers = []

    def on_epoch_end(self):
        self.helpers.append(subprocess.Popen(["sleep", "60"]))

    def close(self):
        for helper in self.helpers:
            helper.kill()
            helper.wait()


class WaitsForItsProcessEachEpoch(Plain):
    """The clean twin: the helper process is waited for."""

    def on_epoch_end(self):
        subprocess.run(["true"], check=True)


class FillsOneBuffer(Plain):
    """The speed trick: one preallocated array filled and returned for every batch. Keras's queue and
    TensorFlow's conversion keep references to it, so queued batches are overwritten."""

    def __init__(self, spec, source):
        super().__init__(spec, source)
        self.buffer = np.empty((self.bs, *self.x.shape[1:]), dtype=self.x.dtype)

    def target(self):
        return self.buffer

    def __getitem__(self, idx):
        rows = slice(idx * self.bs, (idx + 1) * self.bs)
        n = len(self.x[rows])
        out = self.target()[:n]
        for i in range(n):  # the fill loop people write
            out[i] = self.x[idx * self.bs + i]
        return out, np.array(self.y[rows])


class FillsANewArray(FillsOneBuffer):
    """The clean twin: the same fill loop into a new array per batch."""

    def target(self):
        return np.empty_like(self.buffer)


class ReturnsViews(Plain):
    """Clean: each batch a view of the source's rows (no copy), the same view again every epoch."""

    def batch(self, idx):
        rows = slice(idx * self.bs, (idx + 1) * self.bs)
        return self.x[rows], self.y[rows]


returns_views = factory(ReturnsViews)
keeps_every_batch = factory(KeepsEveryBatch)
keeps_the_last_batch = factory(KeepsTheLastBatch)
starts_a_thread_each_epoch = factory(StartsAThreadEachEpoch)
replaces_its_thread_each_epoch = factory(ReplacesItsThreadEachEpoch)
opens_a_file_each_batch = factory(OpensAFileEachBatch)
closes_its_file_each_batch = factory(ClosesItsFileEachBatch)
starts_a_process_each_epoch = factory(StartsAProcessEachEpoch)
waits_for_its_process_each_epoch = factory(WaitsForItsProcessEachEpoch)
fills_one_buffer = factory(FillsOneBuffer)
fills_a_new_array = factory(FillsANewArray)


_HELPER = """
import sys
kept = []
for line in sys.stdin:
    block = bytearray(int(line))  # zero pages: touched below, so really resident
    block[::4096] = b"x" * len(block[::4096])
    if {keeps}:
        kept.append(block)
"""
HELPER_BYTES_PER_EPOCH = 4 << 20


class FeedsAGrowingHelper(Plain):
    """A helper process that lives as long as the dataset (a decoder, a cache server) and keeps what
    it is sent every epoch: memory grows in a worker process, not in the main one."""

    keeps = True

    def __init__(self, spec, source):
        super().__init__(spec, source)
        code = _HELPER.format(keeps=self.keeps)
        self.helper = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)

    def on_epoch_end(self):
        self.helper.stdin.write(f"{HELPER_BYTES_PER_EPOCH}\n")
        self.helper.stdin.flush()

    def close(self):
        self.helper.stdin.close()
        self.helper.wait()


class FeedsAHelperThatFrees(FeedsAGrowingHelper):
    """The clean twin: the helper drops each block once done with it."""

    keeps = False


feeds_a_growing_helper = factory(FeedsAGrowingHelper)
feeds_a_helper_that_frees = factory(FeedsAHelperThatFrees)
