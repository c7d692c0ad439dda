"""Ctrl-C, SIGTERM and SIGHUP end the command line even while its main thread is in native code.

Python runs a signal's handler only when the main thread runs Python code. A main thread waiting
inside native code (TensorFlow's iterator waiting for a batch from a generator that hangs, or
from pool workers a fork left deadlocked) would take the signal only when the run's time limit
ends that wait: minutes later. The signal also writes its number to a wake-up socket
(``signal.set_wakeup_fd``), which a thread of ours waits on. If the process has not ended
``GRACE_S`` after the first stop signal, that thread kills every process below this one (and keeps
a pool from forking replacements), removes the private temporary folders, says how the run ended
in one line and ends the process.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import psutil

from feedbench.core import scratch

GRACE_S = 8.0  # the main thread's own clean-up (workers, children, folders) normally takes a second or two
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_last_word = threading.Lock()
_wakeup: list[socket.socket] = []  # the socket pair lives as long as the process: its fd is the wake-up fd


def claim_last_word() -> bool:
    """True once, for whichever of the main thread and the guard first says how the run ended."""
    return _last_word.acquire(blocking=False)


def install(ending: Callable[[int], tuple[str, int]], grace_s: float = GRACE_S) -> None:
    """From the main thread: arm the guard. ``ending(signum)`` gives the line to say and the exit status."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    _wakeup[:] = [reader, writer]
    # A forked worker inherits the wake-up fd: the SIGTERM its pool's terminate() sends it would
    # reach this guard as if this process had been stopped.
    os.register_at_fork(after_in_child=_forget_in_child)
    threading.Thread(target=_guard, args=(reader, ending, grace_s), daemon=True, name="feedbench-stop-guard").start()


def _forget_in_child() -> None:
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # not possible here: keep the sockets open, or a reused fd number would get the bytes
        return
    for end in _wakeup:
        end.close()
    _wakeup.clear()


def _guard(reader: socket.socket, ending: Callable[[int], tuple[str, int]], grace_s: float) -> None:
    while True:
        received = reader.recv(64)
        stops = [signum for signum in received if signum in STOPS]
        if stops:
            break
    time.sleep(grace_s)  # the main thread normally ends the process before this
    line, status = ending(stops[0])
    _kill_everything_below()
    scratch.remove_private_folders()
    if claim_last_word():
        sys.stderr.write(line + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _kill_everything_below(within_s: float = 3.0) -> None:
    """Every descendant, whatever its session or group (measuring children start their own).

    A multiprocessing pool replaces killed workers at once, from a thread of this process that is
    still running: from here on, anything this process forks exits before it runs (a replacement
    forked from a process with TensorFlow's threads may otherwise deadlock and outlive us)."""
    os.register_at_fork(after_in_child=_exit_at_once)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            below = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
        except psutil.Error:
            return
        if not below:
            return
        for proc in below:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(below, timeout=0.5)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _exit_at_once() -> None:
    os._exit(0)
