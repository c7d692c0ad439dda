"""The one way feedbench runs work in a child process (the sweep, a fresh repeat run, legacy Keras 2).

``run_child(module, request, limit_s)`` starts ``python -m MODULE REQUEST_FILE`` in a new process
group. The child (``serve(handler)`` in that module's ``__main__``) reads the request, and writes
one JSON line per result as each is ready; the parent hands each to ``on_result``. The time limit
counts from the last result (or the start), so a child measuring many settings has the limit per
setting. On every exit path (the end, a failure, the limit, an exception or interrupt in the
parent) the child's whole process group is killed. The request, the results and the child's
stderr are unlinked temporary files it inherits as open descriptors: nothing is left on disk,
even when this process is killed outright. What the child and the processes below it write to
the temporary folder goes to one of their own (``scratch``), removed when the call ends.

A child that has said everything ends at once (``os._exit``): the interpreter's teardown measures
nothing, costs TensorFlow's second or so, and can hang on a backend's thread.

A child that fails says why in one line: the error it wrote, or how it ended (its exit status or
the signal that killed it) with its last words on stderr. The child also dies with its parent:
the kernel's parent-death signal, and a check that its parent is the one that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import psutil

from feedbench.core import procs, scratch, settings
from feedbench.core.errors import DriveTimeout, FeedbenchError, one_line, show_warnings_as_lines
from feedbench.core.quiet import is_start_up_line, start_tensorflow_quietly

_PARENT_ENV = "FEEDBENCH_CHILD_OF"
_ERROR_KEY = "__child_error__"
_ERROR_TYPE_KEY = "__child_error_type__"  # the failure's class name (a parent may retry some kinds)
_DONE_KEY = "__child_done__"  # written after the last result: what follows is only the exit
START_UP_S = 90.0  # a fresh process importing TensorFlow on a busy machine, before its own limit
EXIT_GRACE_S = 5.0  # a child that said everything ends at once (``_end_now``); past this, it is killed


class ChildFailed(FeedbenchError):
    """The child process failed or died; ``results`` holds what it had delivered."""

    def __init__(self, message: str, results: list | None = None, error_type: str | None = None):
        super().__init__(message)
        self.results = results or []
        self.error_type = error_type  # the class name of the child's own error, where it said one


class ChildTimeout(ChildFailed, DriveTimeout):
    """The child made no progress within its time limit and was killed."""


def run_child(
    module: str,
    request: dict[str, Any],
    limit_s: float,
    env: dict[str, str] | None = None,
    on_result: Callable[[Any], None] | None = None,
    what: str = "measuring process",
    cancel: threading.Event | None = None,
) -> list:
    """Run ``module`` on ``request`` in a fresh process group; return the results it wrote."""
    results: list = []
    # Request, results and stderr are unlinked files passed as descriptors, and the child's TMPDIR goes
    # with this call: nothing is left on disk however this process ends, SIGKILL included.
    with (
        scratch.folder_for_children() as child_tmp,
        tempfile.TemporaryFile("w+") as request_file,
        tempfile.TemporaryFile("w+b") as out_file,
        tempfile.TemporaryFile("w+b") as stderr,
    ):
        json.dump({**request, "_out": _fd_path(out_file)}, request_file)
        request_file.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", module, _fd_path(request_file)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=child_env({"TMPDIR": child_tmp, **(env or {})}),
            pass_fds=(request_file.fileno(), out_file.fileno()),
            start_new_session=True,  # its own process group, killed whole
        )
        read = 0
        last_progress = time.monotonic()
        said_all_at = None
        try:
            while True:
                finished = proc.poll() is not None
                read, new = _read_new(out_file, read)
                for item in new:
                    if isinstance(item, dict) and _ERROR_KEY in item:
                        raise ChildFailed(f"{what} failed: {item[_ERROR_KEY]}", results, item.get(_ERROR_TYPE_KEY))
                    if isinstance(item, dict) and _DONE_KEY in item:
                        said_all_at = time.monotonic()
                        continue
                    results.append(item)
                    last_progress = time.monotonic()
                    if on_result:
                        on_result(item)
                if finished:
                    if proc.returncode != 0 and said_all_at is None:  # after it said all, only its exit failed
                        said = _last_line(stderr)
                        raise ChildFailed(
                            f"{what} {procs.how_it_ended(proc.returncode)}" + (f": {said}" if said else ""), results
                        )
                    return results
                if said_all_at is not None and time.monotonic() - said_all_at > EXIT_GRACE_S:
                    # Everything is in; an exit stuck at interpreter shutdown (a backend's
                    # iterator waiting on its prefetch thread) is ended by the group kill below.
                    return results
                if cancel is not None and cancel.is_set():
                    raise ChildFailed(f"{what} was cancelled", results)
                if time.monotonic() - last_progress > limit_s:
                    raise ChildTimeout(f"{what} exceeded its time limit of {limit_s:g} s and was killed", results)
                time.sleep(0.05)
        finally:
            _kill_group(proc.pid)
            proc.wait()
            _pass_on_warnings(stderr)


def _fd_path(handle) -> str:
    """A path the child opens an inherited descriptor by (its own file position, same file)."""
    return f"/dev/fd/{handle.fileno()}"


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The child imports what this process imports (plug-ins found on our sys.path too) and runs
    under the settings in force here (``settings.current()``), then ``extra``."""
    paths = [entry or os.getcwd() for entry in sys.path]
    env = {name: value for name, value in os.environ.items() if name not in settings.BY_NAME}
    env.update(settings.environ(settings.current()))
    env.update(PYTHONPATH=os.pathsep.join(paths), TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    env[_PARENT_ENV] = str(os.getpid())
    env.update(extra)
    return env


def _read_new(handle, offset: int):
    handle.seek(offset)  # the child writes through its own descriptor: read what it added
    data = handle.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
    return offset + len(complete), [json.loads(line) for line in complete.splitlines() if line.strip()]


def _pass_on_warnings(stderr) -> None:
    """The child's own one-line warnings (e.g. processes the code under test left running) reach
    the user; the rest of its standard error stays behind (it is for failures)."""
    for line in _lines(stderr):
        if line.startswith("feedbench: warning:"):
            sys.stderr.write(line + "\n")


def _last_line(stderr) -> str | None:
    """The child's last words, skipping absl's start-up lines (a fatal line is last words)."""
    lines = [line.strip() for line in _lines(stderr) if line.strip() and not is_start_up_line(line)]
    return lines[-1] if lines else None


def _lines(handle) -> list[str]:
    handle.seek(0)
    return handle.read().decode(errors="replace").splitlines()


def _kill_group(pgid: int) -> None:
    """Kill the child's process group, its resource trackers last.

    multiprocessing's resource tracker unlinks the semaphores and segments its processes
    registered once they are gone; killed with them it would leave them in /dev/shm for good.
    """
    members = procs.group_members(pgid)
    trackers = [p for p in members if procs.is_resource_tracker(p)]
    for member in members:
        if member not in trackers:
            procs.quietly(member.kill)
    psutil.wait_procs([m for m in members if m not in trackers], timeout=5)
    _, alive = psutil.wait_procs(trackers, timeout=5)  # they exit once nothing holds their pipe
    for tracker in alive:
        procs.quietly(tracker.kill)
    try:
        os.killpg(pgid, signal.SIGKILL)  # anything started meanwhile
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- the child's side


def serve(handler: Callable[[dict[str, Any]], Iterable[Any]], argv: list[str] | None = None) -> int:
    """The child's main: run ``handler(request)`` and write each result it yields as a JSON line.

    Call it as ``sys.exit(serve(handler))`` under ``if __name__ == "__main__"``: the status of a
    failure comes back; once everything is said, the process ends here (``_end_now``).
    """
    options = settings.read()  # this process's entry: read once, in force for the whole request
    _die_with_parent(options.child_of)
    procs.own_interpreter()  # this process is ours: a thread stuck in native code ends it
    show_warnings_as_lines()
    start_tensorflow_quietly()
    with open((argv or sys.argv[1:])[0]) as handle:
        request = json.load(handle)
    out = request.pop("_out")
    try:
        with settings.applied(options):
            for result in handler(request):
                _write(out, result)
        _write(out, {_DONE_KEY: True})
        _end_now()
    except SystemExit as exc:  # the code under test called sys.exit: a failure, said as one
        _write(out, {_ERROR_KEY: f"the code under test called sys.exit({exc.code!r})"})
        return 1
    except Exception as exc:  # one line to the parent; the traceback stays on stderr
        import traceback

        traceback.print_exc()
        said = one_line(exc)
        if not isinstance(exc, FeedbenchError):  # not a verdict on the input: say where it broke
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            said += "".join(f" (at {os.path.basename(f.filename)}:{f.lineno})" for f in frame)
        _write(out, {_ERROR_KEY: said, _ERROR_TYPE_KEY: type(exc).__name__})
        return 1


def _end_now() -> NoReturn:
    """Everything is said: end without the interpreter's teardown. TensorFlow's costs about a second
    per measuring process, and a backend's iterator waiting on its prefetch thread can hold it for good. What
    teardown would remove (AutoGraph's files, multiprocessing's folders) is in the private folder
    the parent removes; processes left behind go with the parent's kill of the process group."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _write(path: str, item: Any) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(item) + "\n")


def _die_with_parent(expected: int | None) -> None:
    procs.die_with_parent()
    if not expected:
        return

    def watch():  # where the parent-death signal does not exist, or raced the start
        while True:
            if os.getppid() != int(expected):
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != int(expected):
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="feedbench-parent-check").start()
