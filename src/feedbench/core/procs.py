"""The process tree: find worker processes, and make sure none outlives its call.

Used by the driver (clean-up) and by the memory sampler (whose figures sum
over the same tree).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import psutil

from feedbench.core.errors import WorkerLeak

# multiprocessing's helpers live as long as the interpreter (the forkserver's children still count):
# killing one breaks every later pool of that start method.
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
    """The forkserver or resource tracker itself; not the workers the forkserver forks (which
    carry its command line too, but whose parent is the forkserver)."""
    marker = _helper_marker(proc)
    if marker is None:
        return False
    try:
        parent = proc.parent()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return True
    return parent is None or _helper_marker(parent) != marker


def _helper_marker(proc: psutil.Process) -> str | None:
    try:
        command = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return next((helper for helper in _HELPERS if helper in command), None)


def _same_session(proc: psutil.Process) -> bool:
    """Whether ``proc`` is in this process's session: feedbench's own child runs (in sessions of
    their own) are ended by their runner, never reaped by a run going on beside them."""
    try:
        return os.getsid(proc.pid) == os.getsid(0)
    except (ProcessLookupError, PermissionError):
        return False


def descendant_pids(pid: int | None = None) -> set[int]:
    return {proc.pid for proc in descendants(pid)}


def reap(keep: set[int], grace_s: float = 2.0) -> dict[int, str]:
    """Terminate, then kill, every descendant not in ``keep``; return their pids and names.

    Waiting also collects zombies, so the returned processes are really gone.
    """
    strays = [proc for proc in descendants() if proc.pid not in keep and _same_session(proc)]
    names = {proc.pid: _name(proc) for proc in strays}
    for proc in strays:
        quietly(proc.terminate)
    _, alive = psutil.wait_procs(strays, timeout=grace_s)
    for proc in alive:
        quietly(proc.kill)
    psutil.wait_procs(alive, timeout=grace_s)
    return names


def _name(proc: psutil.Process) -> str:
    try:
        command = proc.cmdline()
        return " ".join(command)[:200] if command else proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"


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


def quietly(action) -> None:
    """Run a signal-sending action on a process that may already be gone."""
    try:
        action()
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def group_members(pgid: int) -> list[psutil.Process]:
    """Every living process of process group ``pgid``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return found


def is_resource_tracker(proc: psutil.Process) -> bool:
    return _helper_marker(proc) == "multiprocessing.resource_tracker"


def _prctl(option: int, value: int) -> None:
    """Linux's prctl(2); elsewhere, or without a C library to call it in, nothing."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value)
        except OSError:
            pass


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies, however it dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def how_it_ended(exitcode: int) -> str:
    """A process's exit status in words: 'exited with status 3', 'was killed by SIGKILL'."""
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


_owned = False


def own_interpreter() -> None:
    """Declare that this process is feedbench's own (the command line, a measuring child).

    Only then may feedbench end it: a data path stuck in native code past its time limit ends an
    owned process (exit status 124), and never a library caller's interpreter.
    """
    global _owned
    _owned = True
    _become_subreaper()


def _become_subreaper() -> None:
    """Linux: orphans below this process (a daemon a worker started, then the worker ended) become
    its children instead of init's, so the clean-up after a run still sees and stops them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def interpreter_owned() -> bool:
    return _owned
