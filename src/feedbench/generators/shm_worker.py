"""The worker side of ``shm``: shared-memory segments and the worker loop.

Kept free of Keras and TensorFlow on purpose: a worker started with spawn or
forkserver imports this module, and it must start in a fraction of a second
with only NumPy loaded.

A segment is a file in ``/dev/shm`` (a temporary directory where there is
none) mapped by every process. The main process unlinks its name as soon as
every worker has mapped it, so no name is left behind whatever happens after
start-up; the memory goes when the last mapping does.
"""

from __future__ import annotations

import mmap
import os
import signal
import tempfile
import traceback
import uuid
from dataclasses import dataclass

import numpy as np

from feedbench.core.procs import die_with_parent

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
SEGMENT_PREFIX = "feedbench-shm-"
PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class Layout:
    """Shapes and dtypes of one array held in a segment."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


class Segment:
    """A named shared-memory file mapped into this process."""

    def __init__(self, path: str, size: int, create: bool):
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, max(size, 1))
            self.map = mmap.mmap(fd, max(size, 1) if create else 0)  # 0: the whole file
        finally:
            os.close(fd)

    @classmethod
    def create(cls, size: int) -> Segment:
        return cls(os.path.join(SHM_DIR, f"{SEGMENT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"), size, True)

    def array(self, layout: Layout, offset: int = 0) -> np.ndarray:
        return np.ndarray(layout.shape, layout.dtype, buffer=self.map, offset=offset)

    def unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class RingSpec:
    """Everything a worker needs to attach: picklable, small."""

    path: str
    slots: int
    x: Layout  # one slot's x: (batch_size, ...)
    y: Layout

    @property
    def slot_bytes(self) -> int:
        return self.x.nbytes + self.y.nbytes

    def views(self, segment: Segment) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per slot, its x and y arrays, each made straight from the segment's buffer.

        Separate arrays, not rows of one: a view of a slot then keeps *that slot's*
        array alive, so its reference count tells whether a slot is still in use.
        """
        x = [segment.array(self.x, offset=slot * self.x.nbytes) for slot in range(self.slots)]
        y_start = self.slots * self.x.nbytes
        y = [segment.array(self.y, offset=y_start + slot * self.y.nbytes) for slot in range(self.slots)]
        return x, y


@dataclass(frozen=True)
class SourceSpec:
    """Where a worker finds the source: a shared segment, or the ``.npy`` file of a memmap."""

    x: Layout
    y: Layout
    segment_path: str | None = None
    npy_path: str | None = None

    def attach(self) -> tuple[np.ndarray, np.ndarray, Segment | None]:
        if self.npy_path is not None:
            segment = Segment(self.segment_path, 0, False)  # holds y only
            return np.load(self.npy_path, mmap_mode="r"), segment.array(self.y), segment
        segment = Segment(self.segment_path, 0, False)
        return segment.array(self.x), segment.array(self.y, offset=self.x.nbytes), segment


@dataclass(frozen=True)
class Job:
    """What to compute: the keyed batch function's fixed arguments."""

    n: int
    batch_size: int
    seed: int
    shuffle: bool
    work: object  # a feedbench Workload


class _SharedSource:
    """Duck-types feedbench's Source for keyed_batch: x and y arrays."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def _alive(pid: int) -> bool:
    if os.getppid() == pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim_orphaned_segments() -> list[str]:
    """Unlink segments whose creating process is dead (killed in the instant before it unlinked them)."""
    reclaimed = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return reclaimed
    for name in names:
        if not name.startswith(SEGMENT_PREFIX):
            continue
        owner = name[len(SEGMENT_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                reclaimed.append(name)
            except OSError:
                pass
    return reclaimed


def worker_main(wid: int, ring: RingSpec, source: SourceSpec, job: Job, tasks, results, parent: int) -> None:
    """Compute keyed batches for ``(slot, epoch, index)`` tasks and write them into their slot.

    ``tasks`` and ``results`` are this worker's ends of two pipes (``multiprocessing.Connection``):
    it reads tasks from one and says what it did on the other."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    from feedbench.generators.keying import epoch_order, keyed_batch

    try:
        segment = Segment(ring.path, 0, False)
        ring_x, ring_y = ring.views(segment)
        src_x, src_y, _src_segment = source.attach()
        src = _SharedSource(src_x, src_y)
    except BaseException:
        _say(results, ("error", wid, None, None, None, traceback.format_exc()))
        return
    if not _say(results, ("ready", wid, os.getpid())):
        return
    orders: dict[int, np.ndarray] = {}
    while True:
        try:
            if not tasks.poll(PARENT_POLL_S):
                if not _alive(parent):
                    return  # the dataset's process is gone (under forkserver our parent is the server, not it)
                continue
            task = tasks.recv()
        except (EOFError, OSError):  # the dataset closed its end
            return
        if task is None:
            return
        slot, epoch, index = task
        try:
            if epoch not in orders:
                orders = {epoch: epoch_order(job.seed, epoch, job.n, job.shuffle)}
            x, y = keyed_batch(src, orders[epoch], job.batch_size, index, job.seed, epoch, job.work)
            rows = len(x)
            if x.shape[1:] != ring.x.shape[1:] or x.dtype != np.dtype(ring.x.dtype) or rows > ring.x.shape[0]:
                raise ValueError(
                    f"batch {index} has x {x.shape} {x.dtype}; expected (<= {ring.x.shape[0]}, "
                    f"{', '.join(map(str, ring.x.shape[1:]))}) {ring.x.dtype}"
                )
            ring_x[slot][:rows] = x
            ring_y[slot][:rows] = y
            message = ("done", wid, slot, epoch, index, rows)
        except BaseException:  # reported with the index; the parent raises it
            message = ("error", wid, slot, epoch, index, traceback.format_exc())
        if not _say(results, message):
            return


def _say(results, message) -> bool:
    """Send a message to the dataset; False when it is no longer listening (it closed or died)."""
    try:
        results.send(message)
    except OSError:
        return False
    return True
