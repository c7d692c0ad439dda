"""The one module that touches Keras's private API.

feedbench walks fit's own epoch iterators and stops Keras's worker pools itself; neither is
public API. Everything that reaches into ``keras.src`` is here, so a Keras upgrade that moves
them breaks one module, and ``check_version`` says which versions this was tested against.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
import weakref

# The Keras 3 minor releases the driver is checked on: the oldest a current TensorFlow accepts to the
# newest (docs/keras-versions.md; `bash tests/keras_range.sh` runs the fit-pinned tests on both ends).
KERAS_RANGE = ((3, 12), (3, 15))

# Frames from these files mean a thread is producing batches for the data path: a tf.data
# py_function thread, or a Keras enqueuer or pool thread.
DATA_PATH_FILES = (
    os.path.join("tensorflow", "python", "ops", "script_ops.py"),
    os.path.join("keras", "src", "trainers", "data_adapters"),
)


# The pids of every worker process a Keras pool started in this process, in order: a pool that
# lives for one short epoch can come and go between two memory samples, and still counts.
STARTED_WORKERS: list[int] = []


def backend() -> str:
    import keras

    return keras.backend.backend()


def check_version(version: str | None = None) -> str | None:
    """A one-line warning when the installed Keras (or ``version``) is outside ``KERAS_RANGE``."""
    if version is None:
        import keras

        version = keras.__version__
    (low, high) = KERAS_RANGE
    try:
        minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        minor = None
    if minor is None or not low <= minor <= high:
        return (
            f"Keras {version} is installed; feedbench's driver was checked on Keras {low[0]}.{low[1]} to "
            f"{high[0]}.{high[1]}: run `bash tests/keras_range.sh` with it before trusting its figures"
        )
    return None


def epoch_iterator(dataset, steps_per_epoch: int | None, shuffle: bool):
    """The active backend's own epoch iterator, built as ``model.fit`` builds it."""
    warning = check_version()
    if warning:
        warnings.warn(warning, stacklevel=2)
    name = backend()
    kwargs = dict(x=dataset, steps_per_epoch=steps_per_epoch, shuffle=shuffle)
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
    from feedbench.core.errors import FeedbenchError

    raise FeedbenchError(f"Keras backend {name!r} is active; feedbench drives tensorflow, jax or torch")


class TrackedPools:
    """The worker pools Keras made during a run, held weakly (a pool Keras let go of is freed with
    its pipes: held here, every epoch's pool kept its descriptors open to the end of the run, which
    read as the generator's leak). Iterating gives a snapshot under a lock: Keras adds a pool from
    its own thread while the watchdog iterates."""

    def __init__(self):
        self._refs: list[weakref.ref] = []
        self._lock = threading.Lock()

    def add(self, pool) -> None:
        with self._lock:
            self._refs = [ref for ref in self._refs if ref() is not None] + [weakref.ref(pool)]

    def __iter__(self):
        with self._lock:
            refs = list(self._refs)
        return iter([pool for pool in (ref() for ref in refs) if pool is not None])


@contextlib.contextmanager
def tracked_pools():
    """Record every worker pool Keras creates meanwhile (threads and processes): a ``TrackedPools``."""
    from keras.src.trainers.data_adapters import py_dataset_adapter as keras_pda

    created = TrackedPools()
    original = keras_pda.get_pool_class

    def tracking_pool_class(use_multiprocessing):
        pool_class = original(use_multiprocessing)

        def make(*args, **kwargs):
            pool = pool_class(*args, **kwargs)
            # Its first workers, held now: one that dies at once is replaced within 0.1 s.
            pool._feedbench_first_workers = list(getattr(pool, "_pool", []))
            STARTED_WORKERS.extend(p.pid for p in pool._feedbench_first_workers if getattr(p, "pid", None))
            created.add(pool)
            return pool

        return make

    keras_pda.get_pool_class = tracking_pool_class
    try:
        yield created
    finally:
        keras_pda.get_pool_class = original


def watch_batches(iterator, seen) -> None:
    """Have the epoch iterator's PyDataset adapter call ``seen(batch)`` with each batch it takes from
    the dataset from now on (serially: the generator's own arrays as it returns them; from thread
    workers: as they leave Keras's queue; from worker processes: unpickled copies). Set on this
    adapter alone, after the iterator was built (TensorFlow's spec inference, whose batches are never
    delivered, is over). A ``seen`` that raises never fails the run."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = getattr(iterator, "data_adapter", None)
    if not isinstance(adapter, PyDatasetAdapter):
        return
    standardize = adapter._standardize_batch

    def watched(batch):
        with contextlib.suppress(Exception):
            seen(batch)
        return standardize(batch)

    adapter._standardize_batch = watched


def pool_worker_pids(pools) -> set[int]:
    """The pids of every worker process the given Keras pools hold or held."""
    pids = set()
    for pool in list(pools):
        for process in [*getattr(pool, "_feedbench_first_workers", []), *getattr(pool, "_pool", [])]:
            pid = getattr(process, "pid", None)
            if pid:
                pids.add(pid)
    return pids


def fail_pending(pools, error: BaseException) -> None:
    """Complete every pending pool result with ``error`` so no Keras thread waits forever."""
    for pool in list(pools):
        cache = getattr(pool, "_cache", {})
        for result in list(cache.values()):
            with contextlib.suppress(Exception):
                result._set(0, (False, error))


def abort(iterator, pools, error: BaseException) -> None:
    """Stop Keras's enqueuer and pools without waiting on a batch that may never come."""
    enqueuer = getattr(getattr(iterator, "data_adapter", None), "enqueuer", None)
    if enqueuer is not None and enqueuer.is_running():
        fail_pending(pools, error)
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
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def _terminate_all(pools) -> None:
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.terminate()


class PoolWatch:
    """Notices a Keras worker process that dies while its pool runs (SIGKILL, SIGABRT, os._exit,
    sys.exit, the OOM killer): multiprocessing quietly replaces it and the batch it held never
    comes, so without this a run would wait for its time limit."""

    def __init__(self, pools):
        self.pools = pools
        self.seen: dict[int, object] = {}  # id(process) -> (pool, process)

    def dead(self) -> str | None:
        """A line naming a worker that died while its pool was running, or None."""
        import multiprocessing.pool

        from feedbench.core.procs import how_it_ended

        for pool in _process_pools(self.pools):
            for process in [*getattr(pool, "_feedbench_first_workers", []), *getattr(pool, "_pool", [])]:
                self.seen.setdefault(id(process), (pool, process))
        for pool, process in list(self.seen.values()):
            code = process.exitcode
            if code is None:
                continue
            # Keras closes a pool as soon as it has queued the epoch's batches: a worker that ends
            # while batches are still pending (and the pool is not being terminated) died.
            state = getattr(pool, "_state", None)
            pending = bool(getattr(pool, "_cache", None))
            if state == multiprocessing.pool.RUN or (state == multiprocessing.pool.CLOSE and pending):
                return f"a Keras worker process (pid {process.pid}) {how_it_ended(code)} while its pool was running"
            del self.seen[id(process)]
        return None


def _process_pools(pools) -> list:
    """The Keras pools that run worker processes (not threads)."""
    import multiprocessing.pool

    return [
        pool
        for pool in list(pools)
        if isinstance(pool, multiprocessing.pool.Pool) and not isinstance(pool, multiprocessing.pool.ThreadPool)
    ]


# A worker's CPU time must grow by more than this for it to count as working (a sleeping or
# deadlocked process gains nothing; the interpreter's own housekeeping stays far below it).
STALL_CPU_S = 0.02
STALL_SAMPLE_S = 0.5  # how often the workers' CPU times are read (psutil, a few pids)


class StallWatch:
    """Notices Keras workers that have batches to produce but make no progress: no pending batch
    completes and no worker uses CPU for ``stall_s`` seconds. Worker processes deadlocked on a
    lock that fork copied in a held state (TensorFlow's are) look like this, and so do worker
    threads waiting for something that never comes (a lock, a queue, a read that hangs); so would
    a worker waiting on something slower than ``stall_s`` (a remote read), which is why it is off
    unless asked for.
    """

    def __init__(self, pools, stall_s: float):
        import time

        self.pools = pools
        self.stall_s = stall_s
        self._clock = time.monotonic
        self._since = self._clock()  # the last sign of progress
        self._sampled = 0.0
        self._pending: set[int] = set()
        self._cpu: dict[tuple[str, int], float] = {}

    def stalled(self) -> str | None:
        """A line naming the stalled workers, or None."""
        now = self._clock()
        if now - self._sampled < STALL_SAMPLE_S:
            return None
        self._sampled = now
        pending, processes, threads = pending_jobs(self.pools), [], []
        for pool in _process_pools(self.pools):
            processes.extend(p.pid for p in list(getattr(pool, "_pool", [])) if getattr(p, "pid", None))
        for pool in _thread_pools(self.pools):
            threads.extend(t.native_id for t in list(getattr(pool, "_pool", [])) if getattr(t, "native_id", None))
        cpu = {("process", pid): seconds for pid, seconds in _cpu_seconds(processes).items()}
        cpu.update({("thread", tid): seconds for tid, seconds in _thread_cpu_seconds(threads).items()})
        completed = bool(self._pending - pending)
        working = any(seconds - self._cpu.get(key, 0.0) > STALL_CPU_S for key, seconds in cpu.items())
        self._pending, self._cpu = pending, cpu
        if not pending or completed or working:
            self._since = now
            return None
        if now - self._since < self.stall_s:
            return None
        kinds = [kind for kind, ids in (("process", processes), ("thread", threads)) if ids]
        alive = {kind: sorted(i for k, i in cpu if k == kind) for kind in kinds}
        return f"no progress for {self.stall_s:g} s: " + "; ".join(
            _stalled_workers(kind, alive[kind], len(pending)) for kind in kinds
        )


def pending_jobs(pools) -> set[int]:
    """The batches Keras's worker pools (processes and threads) owe: ids of their pending jobs."""
    return {
        id(job)
        for pool in _process_pools(pools) + _thread_pools(pools)
        for job in list(getattr(pool, "_cache", {}).values())
    }


def _stalled_workers(kind: str, ids: list[int], pending: int) -> str:
    alive = ", ".join(str(i) for i in ids) or "none alive"
    if kind == "process":
        return (
            f"Keras's worker processes (pids {alive}) had {pending} batch(es) to produce, finished none and "
            "used no CPU (deadlocked: a lock copied into a forked worker while held, as TensorFlow's can be, does this)"
        )
    return (
        f"Keras's worker threads (thread ids {alive}) had {pending} batch(es) to produce, finished none and "
        "used no CPU (waiting for something that never comes: a lock, a queue, a read that hangs)"
    )


def _thread_pools(pools) -> list:
    """The Keras pools that run worker threads."""
    import multiprocessing.pool

    return [pool for pool in list(pools) if isinstance(pool, multiprocessing.pool.ThreadPool)]


def _thread_cpu_seconds(thread_ids) -> dict[int, float]:
    """User + system CPU seconds of each live thread of this process, by native thread id."""
    import psutil

    wanted = set(thread_ids)
    if not wanted:
        return {}
    try:
        return {t.id: t.user_time + t.system_time for t in psutil.Process().threads() if t.id in wanted}
    except psutil.Error:
        return {}


def _cpu_seconds(pids) -> dict[int, float]:
    """User + system CPU seconds of each live process (and its children), by pid."""
    import psutil

    seconds = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            total = sum(process.cpu_times()[:2])
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
        seconds[pid] = total
    return seconds
