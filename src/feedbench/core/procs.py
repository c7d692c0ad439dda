"""The process tree: find worker processes, and make sure none outlives its call.

Used by the driver (clean-up) and by the memory sampler (whose figures sum
over the same tree).
"""

from __future__ import annotations

import ctypes
import signal
import sys

import psutil

from feedbench.core.errors import WorkerLeak

# Python's own per-interpreter helpers, started on first use and meant to live as long
# as the interpreter: the forkserver (whose children, the workers, still count) and
# the resource tracker. Killing them breaks every later pool of that start method.
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every living process below ``pid`` (this process by default), found recursively,
    except multiprocessing's own long-lived helpers."""
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [proc for proc in found if not _is_helper(proc)]


def _is_helper(proc: psutil.Process) -> bool:
    try:
        command = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(helper in command for helper in _HELPERS)


def descendant_pids(pid: int | None = None) -> set[int]:
    return {proc.pid for proc in descendants(pid)}


def reap(keep: set[int], grace_s: float = 2.0) -> list[int]:
    """Terminate, then kill, every descendant not in ``keep``; return their pids.

    Waiting also collects zombies, so the returned processes are really gone.
    """
    strays = [proc for proc in descendants() if proc.pid not in keep]
    for proc in strays:
        _quietly(proc.terminate)
    _, alive = psutil.wait_procs(strays, timeout=grace_s)
    for proc in alive:
        _quietly(proc.kill)
    psutil.wait_procs(alive, timeout=grace_s)
    return [proc.pid for proc in strays]


def assert_no_new_workers(keep: set[int]) -> None:
    """Raise if a descendant not in ``keep`` is still alive (zombies count as gone)."""
    alive = []
    for proc in descendants():
        if proc.pid in keep:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} ({proc.name()})")
        except psutil.NoSuchProcess:
            continue
    if alive:
        raise WorkerLeak(f"worker processes outlived their run: {', '.join(alive)}; expected none")


def _quietly(action) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, however it dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def how_it_ended(exitcode: int) -> str:
    """A process's exit status in words: 'exited with status 3', 'was killed by SIGKILL'."""
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"
