"""Private temporary folders: whatever the code under test writes to the temporary folder goes
with the call that made it.

Libraries under measurement write temporary files that they remove only when their interpreter
exits normally: TensorFlow's AutoGraph writes one ``__autograph_generated_file*.py`` per function
it converts and removes it in an ``atexit`` handler; multiprocessing makes ``pymp-*`` folders.
Processes that end without ``atexit`` (a pool worker, a measuring child ended after it said
everything, our own ``os._exit``) leave them behind, a few per run. Pointing ``TMPDIR`` at a
folder we remove ourselves leaves nothing, however the processes below us end.

A process killed outright (SIGKILL) cannot remove its folder. Each folder holds a lock file its
maker keeps locked (``flock``; forked children share the lock, and the kernel drops it when the
last holder ends, however it ends): the next feedbench command removes the folders nobody holds.
A pid would not do: another container sharing /tmp has its own pids, and a worker can outlive
the process that made the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFIX = "feedbench-tmp-"
_HELD = ".held"  # the lock file inside each folder


@dataclass
class _Private:
    path: str
    held: int  # the lock file's descriptor
    owner: int  # the pid that made it: a forked child never removes its parent's folder
    tmpdir_before: str | None
    tempdir_before: str | None


_this_process: list[_Private] = []  # the command line's own folders, innermost last
_removing = threading.Lock()  # the main thread's way out and the stop guard's may meet


@contextmanager
def folder_for_children() -> Iterator[str]:
    """A new folder for a child process's ``TMPDIR``; removed with what is in it on the way out."""
    path, held = _make()
    try:
        yield path
    finally:
        _remove(path, held)


def use_private_folder() -> str:
    """Send this process's temporary files, and its children's, to a new folder of its own.

    For a process that is feedbench's own (the command line): it calls ``remove_private_folders``
    on every way out, ``os._exit`` included. A process that has one already keeps it (one level:
    a UNIX socket's path, such as asv's or multiprocessing's under TMPDIR, holds 107 bytes).
    """
    mine = _mine()
    if mine:
        return mine[-1].path
    remove_abandoned()
    path, held = _make()
    _this_process.append(_Private(path, held, os.getpid(), os.environ.get("TMPDIR"), tempfile.tempdir))
    os.environ["TMPDIR"] = path  # children read it at their start
    tempfile.tempdir = path  # this process read TMPDIR already
    return path


def has_private_folder() -> bool:
    return bool(_mine())


def _mine() -> list[_Private]:
    """This process's own folders (a forked child inherits its parent's list, not its folders)."""
    return [private for private in _this_process if private.owner == os.getpid()]


def remove_private_folders() -> None:
    """Remove the folders ``use_private_folder`` made in this process, and put TMPDIR back."""
    with _removing:
        while _this_process:
            private = _this_process.pop()
            if private.owner != os.getpid():  # a forked child leaving: the folder is its parent's
                continue
            _remove(private.path, private.held)
            if private.tmpdir_before is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = private.tmpdir_before
            tempfile.tempdir = private.tempdir_before


def remove_abandoned(where: str | None = None) -> list[str]:
    """Remove the folders in ``where`` (the temporary folder) that no living process holds."""
    where = where or tempfile.gettempdir()
    removed = []
    for name in os.listdir(where):
        path = os.path.join(where, name)
        if name.startswith(PREFIX) and _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def _make() -> tuple[str, int]:
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    held = os.open(os.path.join(path, _HELD), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    return path, held


def _remove(path: str, held: int) -> None:
    _end_multiprocessing_tempdir_inside(path)
    shutil.rmtree(path, ignore_errors=True)
    os.close(held)


def _end_multiprocessing_tempdir_inside(path: str) -> None:
    """multiprocessing removes its ``pymp-*`` folder in a finalizer at the interpreter's exit, and
    prints a FileNotFoundError traceback when the folder is gone by then. When that folder is inside
    ``path``, run its finalizer now (it runs once, and clears multiprocessing's note of the folder)."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    tempdir = util.process.current_process()._config.get("tempdir")
    if not tempdir or not tempdir.startswith(path + os.sep):
        return
    for finalizer in list(getattr(util, "_finalizer_registry", {}).values()):
        if getattr(finalizer, "_callback", None) is getattr(util, "_remove_temp_dir", None):
            with contextlib.suppress(Exception):  # the folder goes below in any case
                finalizer()


def _abandoned(path: str) -> bool:
    try:
        probe = os.open(os.path.join(path, _HELD), os.O_RDWR)
    except OSError:  # no lock file: not one of ours, or still being made
        return False
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its maker (or a process it forked) is alive
    finally:
        os.close(probe)
    return True
