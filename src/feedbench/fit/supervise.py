"""The time limit and clean-up around anything that feeds a dataset.

NOTE [ Clean-up on every exit path ]
``supervised(name, timeout_s)`` is the one context manager for both the driver (walking fit's
epoch iterator) and a real ``model.fit`` (training, the tap). Inside it:

- every worker pool Keras creates is tracked, and whatever ends the block (the end, an
  exception, an early stop, the time limit) stops them; no worker process started inside
  outlives the block;
- an exception from the data path comes out as one typed line (``failures.explain``);
- NOTE [ Stall watch ]: a Keras worker process that dies is named at once; with ``FEEDBENCH_STALL_S`` set,
  so are Keras workers that owe batches but finish none and use no CPU for that long, and (in the
  driver, which says when it waits for a batch) any producer: no batch and no CPU used anywhere in
  the process tree for that long;
- past the time limit the watchdog fails every pending pool result (which wakes a consumer
  waiting on a worker), signals the main thread (which wakes one sleeping in Python code) and
  raises inside data-path threads; the block then raises ``DriveTimeout``.

A data path stuck in *native* code cannot be interrupted from inside its process. After
``FEEDBENCH_STUCK_GRACE_S`` more the watchdog reaps the workers and names the stuck threads; a process
that feedbench owns (``procs.own_interpreter``: the command line, a measuring child) then ends
itself with exit status 124 (``on_stuck`` registers another handler). A library caller's
interpreter is never ended: the caller gets ``DriveTimeout`` once the native call returns (run
settings in a child process, as ``profile`` does, for a hard guarantee).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable

from feedbench.core import procs, scratch, settings
from feedbench.core.errors import DriveTimeout, FeedbenchError, ForkedTensorflowFailed, GeneratorFailed, LeftRunning
from feedbench.fit import fork_hazard, keras_api
from feedbench.fit.failures import explain

DEFAULT_TIMEOUT_S = 300.0
_TIMEOUT_SIGNAL = signal.SIGUSR1
POLL_S = 0.05  # how often the watchdog looks at Keras's worker processes

_stuck_handler: Callable[[str], None] | None = None


def on_stuck(handler: Callable[[str], None] | None) -> None:
    """Register what to do with a data path stuck in native code past the limit (the message given).

    Only for a process that owns its interpreter: the command line and feedbench's own
    measuring children end themselves there. None restores the default (report and wait).
    """
    global _stuck_handler
    _stuck_handler = handler


class Supervision:
    """What the supervised block tells its supervisor: the iterator to stop, and where it is."""

    def __init__(self, where: str, watchdog: Watchdog):
        self.iterator = None  # Keras's epoch iterator, whose enqueuer is stopped at the end
        self.position: tuple[int, int] | None = None  # (epoch, step), formatted only on failure
        self.waiting_since: float | None = None  # since when the consumer waits for a batch (time.monotonic)
        self.closers: list[Callable[[], None]] = []  # run before the workers are reaped
        self._where = where
        self._watchdog = watchdog

    def check(self) -> None:
        """Raise DriveTimeout if the time limit has passed (for a consumer not in the main thread)."""
        self._watchdog.check()

    def where(self) -> str:
        return self._where if self.position is None else "epoch {} step {}".format(*self.position)

    def waiting(self) -> None:
        """The consumer now waits for its next batch (the stall watch looks only at such waits)."""
        self.waiting_since = time.monotonic()

    def arrived(self) -> None:
        """A batch came (or the consumer stopped waiting)."""
        self.waiting_since = None


@contextlib.contextmanager
def supervised(name: str, timeout_s: float = DEFAULT_TIMEOUT_S, where: str = "a model.fit step", closers=()):
    """Time limit, typed errors and clean-up for the block; yields a ``Supervision``.

    ``closers`` run at the end before the workers are reaped: what stops the fed dataset's own
    workers (``Built.close``), so they are not mistaken for processes the code under test left."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s} given; expected a positive number of seconds")
    keep = procs.descendant_pids()
    fork_hazard.install()
    watchdog = Watchdog(timeout_s, name)
    state = Supervision(where, watchdog)
    state.closers.extend(closers)
    started_before = len(keras_api.STARTED_WORKERS)
    with keras_api.tracked_pools() as pools, watchdog.armed(pools, keep, state):
        try:
            yield state
            watchdog.check()
        except GeneratorExit:  # the consumer of a driven stream stopped early
            raise
        except FeedbenchError:
            raise
        except Exception as exc:
            if watchdog.died:
                raise watchdog.death() from exc
            if watchdog.fired:
                raise watchdog.error() from exc
            raise explain(exc, name, state.where()) from exc
        finally:
            # No time-limit signal may land inside the clean-up below; a clean-up that hangs
            # (a backend's iterator or a loader's workers) is still ended past the limit.
            watchdog.quiet()
            # every pool's workers, those of pools already freed too (pools are held weakly)
            pool_workers = keras_api.pool_worker_pids(pools) | set(keras_api.STARTED_WORKERS[started_before:])
            keras_api.abort(state.iterator, pools, GeneratorFailed("run stopped"))
            # The backend's iterator goes while the loader still delivers: destroyed after the
            # loader stopped, TensorFlow's waits forever for a prefetch call caught inside it.
            _drop(state)
            for close in state.closers:
                try:
                    close()
                except Exception as exc:  # a loader failing to stop: its workers are reaped below anyway
                    warnings.warn(f"{name}: stopping its workers raised {exc!r}; they were killed", LeftRunning, 2)
            _report_left_running(name, procs.reap(keep), pool_workers)


def _drop(state: Supervision) -> None:
    """Destroy the backend's epoch iterator now (not at some later collection or at exit)."""
    if state.iterator is None:
        return
    gone = weakref.ref(state.iterator)
    state.iterator = None
    if gone() is not None:  # held in a reference cycle: collect it here, under the watchdog
        gc.collect()


def _report_left_running(name: str, reaped: dict[int, str], pool_workers: set[int]) -> None:
    """Say which processes the code under test started and left running (Keras's own pool
    workers are feedbench's to stop, not a finding)."""
    left = {pid: what for pid, what in reaped.items() if pid not in pool_workers}
    if left:
        listed = ", ".join(f"pid {pid} ({what})" for pid, what in sorted(left.items()))
        warnings.warn(
            f"{name}: the code under test left {len(left)} process(es) running after its run: {listed}; "
            "feedbench stopped them (expected none: stop what you start, e.g. in on_epoch_end or close())",
            LeftRunning,
            stacklevel=3,
        )


def _data_threads(main: bool = False) -> dict[int, str]:
    """The threads now running data-path Python code (not this one; the main thread only with
    ``main``, where the jax and torch backends run a producer in the consumer's thread): ident -> where."""
    skip = {threading.get_ident()} | (set() if main else {threading.main_thread().ident})
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    found = {}
    for ident, frame in sys._current_frames().items():
        if ident in skip:
            continue
        top = frame
        stack = []
        while frame is not None:
            stack.append(frame.f_code.co_filename)
            frame = frame.f_back
        if any(marker in path for path in stack for marker in keras_api.DATA_PATH_FILES):
            found[ident] = (
                f"{names.get(ident, f'thread {ident}')} at {os.path.basename(top.f_code.co_filename)}:{top.f_lineno}"
            )
    return found


def _interrupt(threads: dict[int, str]) -> None:
    """Raise DriveTimeout inside each thread, at its next bytecode.

    A producer thread owned by TensorFlow cannot be signalled, but an asynchronous exception
    ends a generator stuck in a Python loop, and tf.data then reports the error to the main
    thread waiting in native code.
    """
    for ident in threads:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(DriveTimeout))


class WaitWatch:
    """Notices a consumer waiting for a batch that nothing works on: no batch for ``stall_s``
    seconds, and in all that time no CPU used by this process (the watchdog's own sampling aside)
    or by any process below it. A producer waiting on a lock, an event, a queue or a read that
    never returns looks like this, whatever runs it: the one thread of a PyDataset without workers,
    a plain generator, tf.data, a loader's own worker processes. So would one waiting on something
    slower than ``stall_s`` (a remote read), which is why, like ``keras_api.StallWatch``, it is off
    unless asked for. Only the driver says when it waits; a block that never does is not watched.
    """

    def __init__(self, state: Supervision, pools, stall_s: float):
        self.state = state
        self.pools = pools
        self.stall_s = stall_s
        self._sampled = 0.0
        self._cpu: float | None = None
        self._working_at = time.monotonic()  # the last sample that saw CPU used

    def stalled(self) -> str | None:
        """A line saying what waits, or None."""
        now = time.monotonic()
        if now - self._sampled < keras_api.STALL_SAMPLE_S:
            return None
        self._sampled = now
        cpu = _tree_cpu_seconds()
        # Batches Keras's workers owe are StallWatch's to judge: it names the workers.
        if self._cpu is None or cpu - self._cpu > keras_api.STALL_CPU_S or keras_api.pending_jobs(self.pools):
            self._working_at = now
        self._cpu = cpu
        since = self.state.waiting_since
        if since is None or now - max(since, self._working_at) < self.stall_s:
            return None
        waiting = list(_data_threads(main=True).values())
        return (
            f"no batch for {self.stall_s:g} s and no CPU used by this process or any below it: the data path "
            "waits for something that never comes (a lock, an event, a queue, a read that hangs)"
            + (f"; waiting: {'; '.join(waiting)}" if waiting else "")
        )


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, less the calling thread's, and of every process below it."""
    import psutil

    total = time.process_time() - time.thread_time()
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


class Watchdog:
    """Ends a block that exceeds its time limit with a clear error."""

    def __init__(self, timeout_s: float, name: str):
        self.timeout_s = timeout_s
        # FEEDBENCH_STALL_S: fail a run whose producers make no progress that long (0: wait for the
        # limit); FEEDBENCH_STUCK_GRACE_S: past the limit, how long a data path stuck in native code gets.
        options = settings.current()
        self.stall_s, self.stuck_grace_s = options.stall_s, options.stuck_grace_s
        self.name = name
        self.fired = False
        self.died: str | None = None  # a Keras worker process that died (or stalled) mid-run, in words
        self._died_of_forks = False  # ... after TensorFlow ran in forked workers (ForkedTensorflowFailed)
        self.stuck: list[str] = []  # threads still in native code after the grace period
        self._done = threading.Event()
        self._quiet = False  # the block is cleaning up: no signal or exception is sent into it
        self._lock = threading.Lock()
        self._forks_from = fork_hazard.mark()  # TensorFlow run in forked workers since the block began

    def error(self) -> DriveTimeout:
        return DriveTimeout(f"{self.name}: run exceeded its time limit of {self.timeout_s:g} s")

    def death(self) -> GeneratorFailed:
        """The error for a worker that died or a run that stalled."""
        return (ForkedTensorflowFailed if self._died_of_forks else GeneratorFailed)(self.died)

    def check(self) -> None:
        if self.died:
            raise self.death()
        if self.fired:
            raise self.error()

    @contextlib.contextmanager
    def armed(self, pools, keep: set[int], state: Supervision | None = None):
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(_TIMEOUT_SIGNAL, self._on_signal) if in_main else None
        self._thread = threading.Thread(
            target=self._watch, args=(pools, in_main, keep, state), daemon=True, name="feedbench-watchdog"
        )
        self._thread.start()
        try:
            yield self
        finally:
            self.disarm()
            if in_main:  # only once the watchdog can send no more signals
                signal.signal(_TIMEOUT_SIGNAL, previous)

    def quiet(self) -> None:
        """From now on send nothing into the block (it is cleaning up); the limit still holds:
        a clean-up stuck past it plus the grace period is handled as a stuck data path."""
        with self._lock:
            self._quiet = True

    def disarm(self) -> None:
        """Stop watching; return once the watchdog thread has ended (it sends no signal after)."""
        self._done.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _on_signal(self, signum, frame):
        if (self.fired or self.died) and not self._quiet:
            self.check()

    def _watch(self, pools, in_main: bool, keep: set[int], state: Supervision | None) -> None:
        deadline = time.monotonic() + self.timeout_s
        workers = keras_api.PoolWatch(pools)
        stall = keras_api.StallWatch(pools, self.stall_s) if self.stall_s > 0 else None
        waits = WaitWatch(state, pools, self.stall_s) if self.stall_s > 0 and state is not None else None
        while not self._done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            fork_hazard.drain()  # keeps the workers' reports flowing, however long the run
            # A Keras worker died or stalls (the batch it holds, or they owe, will never come), or
            # nothing works on the batch the driver waits for: fail now, not at the limit.
            died = workers.dead() or (stall.stalled() if stall else None)
            waited = None if died else (waits.stalled() if waits else None)
            if died or waited:
                forked = fork_hazard.since(self._forks_from)
                cause = f"; {fork_hazard.describe(forked)}" if forked else ""
                with self._lock:
                    if self._quiet:  # the block is already ending: its clean-up stops the pool
                        break
                    # A worker that ran TensorFlow after a fork is the likely cause: say so.
                    self._died_of_forks = bool(forked)  # first: death() reads it once died is set
                    self.died = f"{self.name}: {died or waited}{cause}"
                    # A worker's failure reaches the consumer through its pool; a waiting producer is
                    # woken where it waits (a thread at its next bytecode).
                    self._wake(pools, in_main, self.death(), interrupt_threads=bool(waited))
                # A producer asleep in native code (a lock, a read, a sleep) never wakes: a stuck data path.
                if waited and not self._done.wait(self.stuck_grace_s):
                    self._end_stuck(keep, self.death(), self.stuck_grace_s)
                return
            if time.monotonic() >= deadline:
                break
        else:
            return
        with self._lock:
            if not self._quiet:  # past the limit in the clean-up: nothing is sent, the limit holds
                self.fired = True
                self._wake(pools, in_main, self.error(), interrupt_threads=True)
        if self._done.wait(max(0.0, deadline - time.monotonic()) + self.stuck_grace_s):
            return
        self._end_stuck(keep, self.error(), self.stuck_grace_s)

    @staticmethod
    def _wake(pools, in_main: bool, error: Exception, interrupt_threads: bool) -> None:
        """Send ``error`` wherever the block may wait: Keras's pending pool results, the main thread
        (a signal; its handler raises) and, with ``interrupt_threads``, the data-path threads."""
        keras_api.fail_pending(pools, error)
        if in_main:
            signal.pthread_kill(threading.main_thread().ident, _TIMEOUT_SIGNAL)
        if interrupt_threads:
            _interrupt(_data_threads())

    def _end_stuck(self, keep: set[int], error: Exception, waited_s: float) -> None:
        """The block did not end ``waited_s`` after ``error``: stop its workers, then end the process
        (or hand the message to the registered handler, or say it and wait)."""
        procs.reap(keep)  # a worker process the data path waits on is stopped, at least
        if self._done.wait(1.0):
            return
        self.stuck = sorted(_data_threads().values())
        what = "stopping its workers" if self._quiet else "its data path"
        message = f"{error}, and {what} did not return within {waited_s:g} s more" + (
            f" (stuck in native code: {'; '.join(self.stuck)})" if self.stuck else ""
        )
        if _stuck_handler is not None:
            _stuck_handler(message)
            return
        if procs.interpreter_owned():
            sys.stderr.write(f"feedbench: run failed: {message}; ending the process\n")
            sys.stderr.flush()
            scratch.remove_private_folders()
            os._exit(124)  # our own process (the CLI, a measuring child): a stuck thread would block its exit
        sys.stderr.write(f"feedbench: {message}; waiting for it to return\n")
        sys.stderr.flush()
