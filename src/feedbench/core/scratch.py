"""Private temporary folders: whatever the code under test writes to the temporary folder goes
with the call that made it.

Libraries under measurement write temporary files that they remove only when their interpreter
exits normally: TensorFlow's AutoGraph writes one ``__autograph_generated_file*.py`` per function
it converts and removes it in an ``atexit`` handler; multiprocessing makes ``pymp-*`` folders.
Processes that end without ``atexit`` (a pool worker, a measuring child ended after it said
everything, our own ``os._exit``) leave them behind, a few per run. Pointing ``TMPDIR`` at a
folder we remove ourselves leaves nothing, however the processes below us end.

A process killed outright (SIGKILL) cannot remove its folder; the folder's name carries the pid of
the process that made it, and the next feedbench command removes folders whose maker is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "feedbench-tmp-"
_MADE_BY = re.compile(re.escape(PREFIX) + r"(\d+)-")
_this_process: list[tuple[str, str | None]] = []  # (folder, the TMPDIR it replaced): the command line's


@contextmanager
def folder_for_children() -> Iterator[str]:
    """A new folder for a child process's ``TMPDIR``; removed with what is in it on the way out."""
    path = _make()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def use_private_folder() -> str:
    """Send this process's temporary files, and its children's, to a new folder of its own.

    For a process that is feedbench's own (the command line): it calls ``remove_private_folders``
    on every way out, ``os._exit`` included.
    """
    remove_abandoned()
    path = _make()
    _this_process.append((path, os.environ.get("TMPDIR")))
    os.environ["TMPDIR"] = path  # children read it at their start
    tempfile.tempdir = path  # this process read TMPDIR already
    return path


def remove_private_folders() -> None:
    while _this_process:
        path, before = _this_process.pop()
        shutil.rmtree(path, ignore_errors=True)
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        tempfile.tempdir = None  # read TMPDIR again


def remove_abandoned(where: str | None = None) -> list[str]:
    """Remove the folders in ``where`` (the temporary folder) whose maker is no longer alive."""
    where = where or tempfile.gettempdir()
    removed = []
    for name in os.listdir(where):
        made_by = _MADE_BY.match(name)
        if made_by and not _alive(int(made_by.group(1))):
            shutil.rmtree(os.path.join(where, name), ignore_errors=True)
            removed.append(name)
    return removed


def _make() -> str:
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
