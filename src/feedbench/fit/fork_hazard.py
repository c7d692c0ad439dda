"""Notice TensorFlow running in a forked worker process after its parent had started TensorFlow.

NOTE [ Fork hazard ]
TensorFlow is not fork-safe. A process forked after TensorFlow's runtime started (its thread
pools, its locks) inherits those locks in whatever state they were in at the instant of the fork,
but not the threads that would release them; an op in the child then waits forever or crashes,
some of the time, depending on what the parent's threads were doing at that instant. So whether one
run hangs is chance, and a verdict drawn from hangs would flap from run to run; whether the
generator runs TensorFlow in such a child is not chance. The first TensorFlow op in each such child
reports itself, before it runs (through a pipe the children inherit), so the verdict is the same in
every run, the runs that happen to hang included.

``install()`` arms it for this process (``supervise.supervised`` does, for every run it watches);
``drain()`` collects what children reported; ``mark()`` and ``since(mark)`` select the reports of
one run or one measure; ``adopt`` takes in those a fresh measuring process collected. TensorFlow's
own finalizers (a child freeing tf.functions its parent traced) are not counted: they are
not the generator's ops.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading

# Frames of these packages are the op's machinery; the report names the first frame outside them
# (the generator's line that called TensorFlow).
_LIBRARIES = frozenset({"tensorflow", "keras", "tf_keras", "tensorflow_probability", "tensorflow_addons"})
CAUSE = "TensorFlow ran in "  # how describe() begins, in the messages that name it as a cause
_MAX_LINE = 512  # a report is one write below PIPE_BUF: writes of several children never interleave

_lock = threading.Lock()
_read_fd: int | None = None  # the pipe's read end, in the process that installed it
_write_fd: int | None = None  # where reports go; forked children (and theirs) inherit it
_registered = False
_reports: list[str] = []  # "pid N: where" lines drained so far, oldest first
_original_handle = None  # TensorFlow's Context._handle property, before a child replaced it
_collecting = False  # the garbage collector runs (in a child): TensorFlow's own finalizers, not the generator


def install() -> None:
    """Arm the check in this process (once; later calls do nothing)."""
    global _read_fd, _write_fd, _registered
    with _lock:
        if _read_fd is not None:
            return
        _read_fd, _write_fd = os.pipe()
        os.set_blocking(_read_fd, False)
        # A full pipe (no one drained it) loses a report rather than blocking the worker that writes.
        os.set_blocking(_write_fd, False)
        if _registered:  # a forked child installing its own: the handler came with the fork
            return
        _registered = True
    os.register_at_fork(after_in_child=_in_child)


def drain() -> list[str]:
    """Collect what forked children reported since the last call; returns the new reports."""
    if _read_fd is None:
        return []
    chunks = []
    with _lock:
        while True:
            try:
                chunk = os.read(_read_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        new = [line for line in b"".join(chunks).decode(errors="replace").splitlines() if line]
        _reports.extend(new)
    return new


def adopt(reports: list[str]) -> None:
    """Count reports that another process of this run collected (a fresh measuring process)."""
    with _lock:
        _reports.extend(reports)


def mark() -> int:
    """A position in the reports: ``since(mark())`` later gives the reports made in between."""
    drain()
    return len(_reports)


def since(position: int) -> list[str]:
    drain()
    return _reports[position:]


def describe(reports: list[str]) -> str:
    """One line: where TensorFlow ran in forked workers, and why that is a hazard."""
    pids = list(dict.fromkeys(line.split(":", 1)[0].removeprefix("pid ") for line in reports))
    places = list(dict.fromkeys(line.split(": ", 1)[1] for line in reports if ": " in line))
    return (
        f"{CAUSE}{len(pids)} forked worker process(es) (pids {', '.join(pids[:8])}"
        f"{', ...' if len(pids) > 8 else ''}; {'; '.join(places[:3])}) after this process had started "
        "TensorFlow's runtime: TensorFlow is not fork-safe, such a worker can deadlock or crash at random"
    )


def _in_child() -> None:
    """After a fork, in the child: if TensorFlow's runtime had started, make its first op report."""
    global _original_handle, _reports, _lock, _read_fd
    _reports = []  # the parent's reports are the parent's
    _lock = threading.Lock()  # the parent's may have been held at the fork
    if _read_fd is not None:  # the parent's to read: a child that installs its own gets its own pipe
        with contextlib.suppress(OSError):
            os.close(_read_fd)
        _read_fd = None
    context = sys.modules.get("tensorflow.python.eager.context")
    started = context is not None and getattr(context, "_context", None) is not None
    if not started or not getattr(context._context, "_initialized", False) or _write_fd is None:
        return
    cls = context.Context
    if _original_handle is None:
        _original_handle = cls.__dict__.get("_handle")
    if not isinstance(_original_handle, property):
        return  # a TensorFlow whose context is built differently: not checked, never broken
    write = _write_fd
    original = _original_handle
    if _note_collection not in gc.callbacks:
        gc.callbacks.append(_note_collection)

    def first_op(self):
        # Every eager op (and every tensor made from an array) reads the context's handle first.
        try:
            freeing = _collecting or _in_finalizer()
        except Exception:  # the check must never break the op it watches
            freeing = False
        if freeing:
            return original.fget(self)  # TensorFlow freeing what the parent left: not the generator's op
        cls._handle = original  # report once per child, then cost nothing
        with contextlib.suppress(Exception):  # the check must never break the op it watches
            line = f"pid {os.getpid()}: {_caller()}".encode(errors="replace")[: _MAX_LINE - 1] + b"\n"
            os.write(write, line)
        return original.fget(self)

    cls._handle = property(first_op)


def _note_collection(phase: str, info: dict) -> None:
    global _collecting
    _collecting = phase == "start"


def _in_finalizer() -> bool:
    """Whether a ``__del__`` is on the stack (a forked child freeing TensorFlow objects its parent
    made: a traced tf.function's finalizer reads the context's handle; a variable's does not)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _caller() -> str:
    """The first frame outside TensorFlow and Keras: the generator's line that called TensorFlow."""
    frame = sys._getframe(2)
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).split(".", 1)[0]
        if package not in _LIBRARIES:
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11 and later
            return f"{name} at {os.path.basename(code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "an unknown caller"
