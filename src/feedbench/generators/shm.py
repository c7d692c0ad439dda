"""``shm``: the ``keyed`` stream from a persistent pool writing into a shared-memory ring.

Keras's multiprocessing path pickles every batch through a pipe and forks a
new pool every epoch. ``shm`` keeps its own worker processes for the life of
the dataset; they write finished batches into slots of one shared-memory
segment, and ``__getitem__`` hands Keras a view of the slot: no batch is ever
pickled, and the only copy is the one the backend makes into its tensor.

Every batch is keyed by (epoch, index) and computed by the same function as
``keyed`` (``keying.keyed_batch``), so the stream is ``keyed``'s bit for bit
under any worker count and start method (fork, forkserver, spawn). The ring
is a small cache keyed that way: the pool computes ahead in index order,
across the epoch boundary, and a request for a batch that is not there (the
TensorFlow adapter's two spec reads, the batch jax and torch build the model
on) is scheduled first and the look-ahead restarts from it.

With ``use_multiprocessing=True`` the ``workers`` are shm's processes, and
Keras itself is told ``workers=1`` (it calls ``__getitem__`` in order, in one
thread). With ``use_multiprocessing=False`` there is no ring: Keras's threads
run ``keyed``'s code, exactly as for ``keyed``.

Clean-up: ``close()`` (also on ``with``, garbage collection and interpreter
exit) stops the workers and frees the segments. A worker that raises is
reported with the batch index and its traceback; a worker that dies is
noticed within ``POLL_S`` and reported; either closes the pool, and the next
use starts a fresh one. Workers die with their parent (Linux PDEATHSIG, and
they poll for it), and segment names are unlinked once the workers have
mapped them, so nothing is left in ``/dev/shm`` even after a ``kill -9``.
"""

from __future__ import annotations

import atexit
import collections
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
import weakref

import numpy as np

from feedbench.core import settings
from feedbench.core.errors import GeneratorFailed
from feedbench.core.procs import how_it_ended
from feedbench.core.spec import Built, Spec
from feedbench.generators.keyed import KeyedDataset
from feedbench.generators.keying import keyed_batch
from feedbench.generators.shm_handoff import HandOff, device_converter
from feedbench.generators.shm_worker import (
    Job,
    Layout,
    RingSpec,
    Segment,
    SourceSpec,
    reclaim_orphaned_segments,
    worker_main,
)

POLL_S = 0.2  # how often a waiting request checks that every worker is alive
START_TIMEOUT_S = 120.0  # a spawned worker imports NumPy and feedbench; generous on a busy machine
BATCH_TIMEOUT_S = 300.0  # no batch for this long: fail rather than hang
# Slots beyond the look-ahead, for batches Keras still holds: a tensor may wrap a slot without copying
# (TensorFlow's do), so a slot is rewritten only once every array handed out from it is gone.
HELD_SLOTS = 8


def ring_slots(workers: int) -> int:
    """Slots in the ring: the look-ahead (two batches per worker), what Keras may hold, and one more."""
    return 2 * max(1, workers) + HELD_SLOTS + 1


class ShmDataset(KeyedDataset):
    def __init__(
        self,
        source,
        batch_size,
        seed,
        shuffle,
        work,
        workers=1,
        use_multiprocessing=False,
        max_queue_size=10,
        start_method=None,
    ):
        self.shm_workers = max(1, workers) if use_multiprocessing else 0
        keras_settings = (
            {"workers": 1, "use_multiprocessing": False, "max_queue_size": max_queue_size}
            if self.shm_workers
            else {"workers": workers, "use_multiprocessing": False, "max_queue_size": max_queue_size}
        )
        super().__init__(source, batch_size, seed, shuffle, work, **keras_settings)
        self.max_queue_size = max_queue_size
        self.start_method = start_method or settings.current().shm_start_method
        self._box: list[_Pool | None] = [None]  # the pool, in a box the finalizer can reach
        self._lock = threading.Lock()
        self._closed = False
        self._served: int | None = None  # batches served in this epoch; None outside an epoch
        # Within an epoch, the next batch put on the device ahead of its step (jax on a GPU).
        convert = device_converter() if self.shm_workers else None
        self._convert = convert
        self._ahead = HandOff(weakref.WeakMethod(self._fetch_ahead), convert) if convert else None
        weakref.finalize(self, _close_box, self._box)

    def __getitem__(self, idx):
        if not self.shm_workers:
            return super().__getitem__(idx)
        if not 0 <= idx < len(self):
            raise IndexError(f"batch index {idx} out of range [0, {len(self)})")
        in_epoch = self._served is not None
        with self._lock:
            if self._closed:
                # Asked after close() (a backend's prefetch thread finishing up): no new pool
                # until the next epoch begins; the batch is the same computed here.
                return super().__getitem__(idx)
            key = (self.epoch, self._position(idx))
        ahead = self._ahead if in_epoch else None
        try:
            batch = ahead.take(key) if ahead else None
            if batch is None:
                with self._lock:
                    if self._box[0] is None:
                        self._box[0] = _Pool(self)
                    batch = self._box[0].get(*key)
                if ahead:
                    batch = self._convert(batch)
        except BaseException:
            with self._lock:
                _close_box(self._box)
            raise
        if ahead and key[1] + 1 < len(self):
            ahead.start((key[0], key[1] + 1))
        return batch

    @property
    def worker_pids(self) -> list[int]:
        pool = self._box[0]
        return [p.pid for p in pool.workers] if pool is not None else []

    def _position(self, idx: int) -> int:
        """The batch to serve for a request: within an epoch, shm's own next one.

        Keras asks shm for one batch at a time, from one thread (shm tells it workers=1), and
        ``fit(shuffle=True)`` (its default) permutes the indices it asks for. shm plans its own
        seeded order, so it serves the epoch's batches in that order whatever index is asked:
        the stream is keyed's whether fit shuffles or not, and the look-ahead keeps hitting.
        Outside an epoch (the TensorFlow adapter's spec reads, a direct ``ds[i]``) the index
        is served as asked.
        """
        if self._served is None or self._served >= len(self):
            return idx
        self._served += 1
        return self._served - 1

    def on_epoch_begin(self):
        self._closed = False  # a new run (fit again after close()) gets a fresh pool
        self._served = 0

    def on_epoch_end(self):
        super().on_epoch_end()
        self._served = None

    def _fetch_ahead(self, key):
        """The batch at ``key`` for the hand-off thread, or None once the dataset is closed.

        The lock is held for one poll of the ring at a time, so ``close()`` never waits long."""
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        while True:
            with self._lock:
                if self._closed or self._box[0] is None:
                    return None
                batch = self._box[0].get(*key, patience_s=POLL_S)
            if batch is not None:
                return batch
            if time.monotonic() > deadline:
                raise GeneratorFailed(_no_progress(f"waiting for batch {key[1]} of epoch {key[0]}"))

    def close(self) -> None:
        """Stop the workers and free the shared memory; the next epoch starts a fresh pool."""
        self._closed = True  # first: the hand-off thread stops asking the ring
        if self._ahead is not None:
            self._ahead.stop()
        with self._lock:
            self._closed = True
            _close_box(self._box)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Pool:
    """The workers, the ring and the schedule of one dataset (touched under its lock)."""

    def __init__(self, dataset: ShmDataset):
        self.per_epoch = len(dataset)
        source = dataset.source
        sample_x, sample_y = keyed_batch(
            source, np.arange(source.n), dataset.batch_size, 0, dataset.seed, 0, dataset.work
        )
        self.depth = 2 * dataset.shm_workers  # batches computed ahead
        slots = ring_slots(dataset.shm_workers)
        # slot -> (epoch, index) it holds or is computing; None when free
        self.key_of: list[tuple[int, int] | None] = [None] * slots
        self.ready: dict[tuple[int, int], tuple[int, int]] = {}  # key -> (slot, rows)
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}  # key -> (slot, worker)
        self.handed: set[int] = set()  # slots handed out since they were last filled
        self.next_key: tuple[int, int] = (0, 0)
        self.last_request: tuple[int, int] = (-1, -1)
        self.ring = None
        self._segments: list[Segment] = []
        try:
            ring_segment = self._segment(slots * (sample_x[0].nbytes + sample_y[0].nbytes) * dataset.batch_size)
            self.ring = RingSpec(
                ring_segment.path,
                slots,
                Layout((dataset.batch_size, *sample_x.shape[1:]), sample_x.dtype.str),
                Layout((dataset.batch_size, *sample_y.shape[1:]), sample_y.dtype.str),
            )
            self.slot_x, self.slot_y = self.ring.views(ring_segment)
            source_spec = self._share_source(source)
            self._start(dataset, source_spec)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ start and stop

    def _segment(self, size: int) -> Segment:
        if not self._segments:
            reclaim_orphaned_segments()  # what an earlier process killed mid-start-up left behind
        segment = Segment.create(size)
        self._segments.append(segment)
        return segment

    def _share_source(self, source) -> SourceSpec:
        y = np.ascontiguousarray(source.y)
        y_layout = Layout(y.shape, y.dtype.str)
        x_layout = Layout(source.x.shape, source.x.dtype.str)
        if getattr(source, "path", None) is not None:  # an on-disk memmap: workers map the same file
            segment = self._segment(y.nbytes)
            segment.array(y_layout)[...] = y
            return SourceSpec(x_layout, y_layout, segment.path, str(source.path))
        segment = self._segment(x_layout.nbytes + y.nbytes)
        segment.array(x_layout)[...] = source.x
        segment.array(y_layout, offset=x_layout.nbytes)[...] = y
        return SourceSpec(x_layout, y_layout, segment.path)

    def _start(self, dataset: ShmDataset, source_spec: SourceSpec) -> None:
        # Pipes, not multiprocessing queues: a queue's locks are named semaphores (spawn, forkserver)
        # that a kill before the resource tracker hears of them leaves in /dev/shm; a pipe dies with its holders.
        context = multiprocessing.get_context(dataset.start_method)
        job = Job(dataset.source.n, dataset.batch_size, dataset.seed, dataset.shuffle, dataset.work)
        self.tasks, self.results, self.workers = [], [], []
        self._inbox: collections.deque = collections.deque()
        for wid in range(dataset.shm_workers):
            task_reader, task_writer = context.Pipe(duplex=False)
            result_reader, result_writer = context.Pipe(duplex=False)
            self.tasks.append(task_writer)
            self.results.append(result_reader)
            process = context.Process(
                target=worker_main,
                name=f"feedbench-shm-{wid}",
                daemon=True,
                args=(wid, self.ring, source_spec, job, task_reader, result_writer, os.getpid()),
            )
            try:
                process.start()
            finally:
                task_reader.close()  # the worker's ends: held here, a dead worker's pipe would never close
                result_writer.close()
            self.workers.append(process)
        _LIVE_POOLS.add(self)
        deadline = time.monotonic() + START_TIMEOUT_S
        started = 0
        while started < len(self.workers):
            message = self._receive(deadline, "starting")
            if message is None:
                continue
            if message[0] == "ready":
                started += 1
            elif message[0] == "error":
                raise self._worker_error(message)
        for segment in self._segments:
            segment.unlink()  # every process has it mapped: no name needs to stay in /dev/shm

    def close(self) -> None:
        _LIVE_POOLS.discard(self)
        for process in getattr(self, "workers", []):
            if process.is_alive():
                process.kill()
        for process in getattr(self, "workers", []):
            process.join(timeout=5)
        for connection in [*getattr(self, "tasks", []), *getattr(self, "results", [])]:
            connection.close()
        self.tasks, self.results, self.workers = [], [], []
        for segment in self._segments:
            segment.unlink()  # the memory itself goes with the last array that views it
        self._segments = []

    # ------------------------------------------------------------------ batches

    def get(self, epoch: int, index: int, patience_s: float | None = None):
        """The batch at (epoch, index), as views of its slot (or copies); with ``patience_s``,
        None when it is not ready within that many seconds (the hand-off thread polls)."""
        key = (epoch, index)
        if key not in self.ready and key not in self.pending:
            self.next_key = key  # out of the expected order: look ahead from here
        self.last_request = key
        now = time.monotonic()
        deadline = now + BATCH_TIMEOUT_S
        give_up = None if patience_s is None else now + patience_s
        while True:
            self._schedule()
            if key in self.ready:
                break
            if give_up is not None and time.monotonic() >= give_up:
                return None
            message = self._receive(deadline, f"waiting for batch {index} of epoch {epoch}")
            if message is not None:
                self._handle(message)
        slot, rows = self.ready[key]
        x, y = self.slot_x[slot][:rows], self.slot_y[slot][:rows]
        if sum(1 for other in list(self.handed) if other != slot and self._held(other)) >= HELD_SLOTS:
            # The consumer keeps its batches (a list of them, a deep prefetch buffer):
            # a copy lets this slot go back to the workers at once.
            return np.array(x), np.array(y)
        self.handed.add(slot)
        return x, y

    def _held(self, slot: int) -> bool:
        """Whether a view of the slot is still alive anywhere (our list and the call hold 2 each)."""
        held = sys.getrefcount(self.slot_x[slot]) > 2 or sys.getrefcount(self.slot_y[slot]) > 2
        if not held:
            self.handed.discard(slot)
        return held

    def _advance(self, key):
        epoch, index = key
        return (epoch, index + 1) if index + 1 < self.per_epoch else (epoch + 1, 0)

    def _free_slot(self) -> int | None:
        for slot, held in enumerate(self.key_of):
            if held is None:
                return slot
            if held in self.pending:
                continue
            handed = slot in self.handed
            if self._held(slot):
                continue  # Keras still holds an array of this slot
            if not handed and self.last_request <= held <= self._key_plus(self.last_request, self.depth):
                continue  # computed ahead for the batches about to be asked for
            self.ready.pop(held, None)
            self.key_of[slot] = None
            return slot
        return None

    def _schedule(self) -> None:
        ahead_limit = self._key_plus(self.last_request, self.depth)
        while len(self.pending) < self.depth and self.next_key <= ahead_limit:
            key = self.next_key
            if key in self.ready or key in self.pending:
                self.next_key = self._advance(key)
                continue
            slot = self._free_slot()
            if slot is None:
                return
            worker = min(range(len(self.workers)), key=lambda w: sum(1 for _, wk in self.pending.values() if wk == w))
            self.key_of[slot] = key
            self.pending[key] = (slot, worker)
            try:
                self.tasks[worker].send((slot, *key))
            except OSError:  # the worker is gone: the next receive names how it ended
                pass
            self.next_key = self._advance(key)

    def _key_plus(self, key, steps: int):
        epoch, index = key
        if epoch < 0:
            return (0, steps - 1)
        total = epoch * self.per_epoch + index + steps
        return divmod(total, self.per_epoch)

    def _handle(self, message) -> None:
        kind = message[0]
        if kind == "done":
            _, _, slot, epoch, index, rows = message
            self.pending.pop((epoch, index), None)
            self.ready[(epoch, index)] = (slot, rows)
        elif kind == "error":
            raise self._worker_error(message)

    def _receive(self, deadline: float, doing: str):
        """The next worker message, or None after POLL_S (every worker checked alive)."""
        if not self._inbox:
            open_pipes = [c for c in self.results if not c.closed]
            for connection in multiprocessing.connection.wait(open_pipes, timeout=POLL_S):
                try:
                    while connection.poll():
                        self._inbox.append(connection.recv())
                except (EOFError, OSError):  # the worker ended: its exit status is read below
                    connection.close()
                    self.workers[self.results.index(connection)].join(timeout=1)
        if self._inbox:
            return self._inbox.popleft()
        for wid, process in enumerate(self.workers):
            if process.exitcode is not None:
                raise GeneratorFailed(
                    f"shm: worker {wid} (pid {process.pid}) {how_it_ended(process.exitcode)} "
                    f"while {self._doing(wid, doing)}"
                )
        if time.monotonic() > deadline:
            raise GeneratorFailed(_no_progress(doing))
        return None

    def _doing(self, wid: int, default: str) -> str:
        mine = sorted(key for key, (_, worker) in self.pending.items() if worker == wid)
        if not mine:
            return default
        epoch, index = mine[0]
        return f"producing batch {index} of epoch {epoch}"

    def _worker_error(self, message) -> GeneratorFailed:
        _, wid, _, epoch, index, text = message
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        where = "while starting" if index is None else f"at batch {index} of epoch {epoch}"
        error = GeneratorFailed(f"shm: worker {wid} raised {where}: {last}\nworker traceback:\n{text.rstrip()}")
        error.worker_traceback = text
        return error


def _no_progress(doing: str) -> str:
    return f"shm: no progress for {BATCH_TIMEOUT_S:g} s while {doing}"


def _close_box(box: list) -> None:
    if box[0] is not None:
        box[0].close()
        box[0] = None


_LIVE_POOLS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


def build(spec: Spec, source) -> Built:
    dataset = ShmDataset(source, spec.batch_size, spec.seed, spec.shuffle, spec.work, **spec.parallel_settings())
    # With processes shm runs its own workers and tells Keras workers=1: what runs is the spec's
    # setting, not a dataset that forgot to pass **kwargs on.
    applied = {"workers": dataset.shm_workers, "use_multiprocessing": True} if dataset.shm_workers else None
    return Built(spec, "pydataset", dataset, source, fit_shuffle=False, applied_settings=applied)
