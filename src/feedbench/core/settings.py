"""Every ``FEEDBENCH_*`` environment variable feedbench reads: its name, default and meaning, and
the one place that reads them.

``read()`` parses them all into a frozen ``Settings``, when called, never at import. An entry point
(the command line, ``feedbench.profile``) reads them once and puts them in force for its call
(``applied``); the code below asks ``current()``, and a measuring child is started with the record
in force (``environ``) and reads it once at its own start. A library call with no entry point above
it reads the environment when it asks, so a test or a suite that sets one before a run is seen by
that run. A bad value is one line naming it. The asv suite's modules read the grid's settings at
import (``benchmarks/_grid.py``): asv takes a benchmark's parameters from the module it imports. The
reference page (``feedbench docs``) is written from ``SETTINGS``, and a test fails when the code
names a ``FEEDBENCH_*`` variable this table does not declare, or declares one nobody reads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable.

    Attributes:
        name: the variable, ``FEEDBENCH_...``.
        default: what holds where it is unset, as a user would write it.
        meaning: what it changes, in one sentence.
        audience: ``user`` (set it yourself), ``suite`` (the asv scripts set it) or ``internal``
            (feedbench sets it for its own child processes).
    """

    name: str
    default: str
    meaning: str
    audience: str = "user"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FEEDBENCH_GRID",
        "full",
        "`quick`: the asv suite's smoke grid (workers 1 and 2, the copy workload, the small source, "
        "keyed, numpy_global, tfdata and shm, plus every plug-in); `bash benchmarks/run.sh --quick` sets it",
        "suite",
    ),
    Setting(
        "FEEDBENCH_IMPLEMENTATIONS",
        "every built-in (the quick grid: four)",
        "comma-separated implementation names the asv suite measures instead of its default list",
        "suite",
    ),
    Setting(
        "FEEDBENCH_PLUGINS",
        "none",
        "comma-separated `[NAME=]package.module:callable` generator factories that join the registry",
    ),
    Setting(
        "FEEDBENCH_STALL_S",
        "0 (off; the asv suite sets 5)",
        "seconds with no batch and no CPU used by any producer after which a run ends as stalled, "
        "naming the waiting threads or workers",
    ),
    Setting(
        "FEEDBENCH_STUCK_GRACE_S",
        "15",
        "seconds past a run's time limit after which a data path stuck in native code ends "
        "feedbench's own process with exit status 124",
    ),
    Setting(
        "FEEDBENCH_FORK_TRIES",
        "3 (the asv suite sets 1)",
        "how many times a setting that runs TensorFlow in forked workers is tried when a try crashes or deadlocks",
    ),
    Setting(
        "FEEDBENCH_CACHE",
        "~/.cache/feedbench",
        "the folder for on-disk (.npy memmap) sources; a relative path is taken from where feedbench started",
    ),
    Setting(
        "FEEDBENCH_TF_LOGS",
        "unset",
        "`1` shows TensorFlow's and absl's start-up lines, which feedbench otherwise holds back",
    ),
    Setting(
        "FEEDBENCH_SHM_START_METHOD",
        "Python's (fork on Linux)",
        "the start method of `shm`'s worker processes: fork, forkserver or spawn",
    ),
    Setting(
        "FEEDBENCH_SHM_HAND_OFF",
        "auto",
        "`shm` puts the next batch on the device in a thread of its own: auto (jax on a GPU or TPU), on, off",
    ),
    Setting(
        "FEEDBENCH_TFDATA_SERVICE",
        "unset",
        "`HOST:PORT` of a running tf.data service dispatcher that `tfdata_service` feeds from, "
        "instead of starting its own servers",
    ),
    Setting(
        "FEEDBENCH_DEVICE",
        "unset",
        "the device (cpu or gpu) a measuring child process must train on; set by `feedbench fit --device`",
        "internal",
    ),
    Setting(
        "FEEDBENCH_CHILD_OF",
        "unset",
        "the pid of the feedbench process that started a measuring child, so the child ends with it",
        "internal",
    ),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


HAND_OFF_CHOICES = ("auto", "on", "off")
START_METHODS = ("fork", "forkserver", "spawn")


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``FEEDBENCH_*`` environment, parsed.

    Attributes:
        grid: the asv suite's grid, ``full`` or ``quick``.
        implementations: the names the asv suite measures instead of its default list (empty: its list).
        plugins: ``[NAME=]module:callable`` plug-in paths.
        stall_s: seconds without progress that end a run as stalled; 0 is off.
        stuck_grace_s: seconds past the time limit before a stuck native call ends the process.
        fork_tries: tries of a run that failed after TensorFlow ran in forked workers.
        cache: the folder for on-disk sources, or None for ``~/.cache/feedbench``.
        tf_logs: show TensorFlow's start-up lines.
        shm_start_method: the start method of ``shm``'s workers, or None for Python's.
        shm_hand_off: ``auto``, ``on`` or ``off``.
        tfdata_service: a tf.data service dispatcher's ``HOST:PORT``, or None.
        device: the device a measuring child must train on, or None.
        child_of: the pid of the feedbench process that started this one, or None.
    """

    grid: str = "full"
    implementations: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    stall_s: float = 0.0
    stuck_grace_s: float = 15.0
    fork_tries: int = 3
    cache: str | None = None
    tf_logs: bool = False
    shm_start_method: str | None = None
    shm_hand_off: str = "auto"
    tfdata_service: str | None = None
    device: str | None = None
    child_of: int | None = None


def _listed(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float, whole: bool = False):
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a whole number" if whole else "a number of seconds"
        raise ValueError(f"{name}={text!r} given; expected {kind}, {minimum:g} or more")
    return value


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    text = environ.get(name) or None
    if text is not None and text not in choices:
        raise ValueError(f"{name}={text!r} given; expected one of {', '.join(choices)}")
    return text


def read(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``environ`` (default: this process's environment, now)."""
    env = os.environ if environ is None else environ
    parent = env.get("FEEDBENCH_CHILD_OF")
    grid = env.get("FEEDBENCH_GRID") or "full"
    if grid not in ("full", "quick"):
        raise ValueError(f"FEEDBENCH_GRID={grid!r} given; expected full or quick")
    return Settings(
        grid=grid,
        implementations=_listed(env.get("FEEDBENCH_IMPLEMENTATIONS", "")),
        plugins=_listed(env.get("FEEDBENCH_PLUGINS", "")),
        stall_s=_number(env, "FEEDBENCH_STALL_S", 0.0, 0.0),
        stuck_grace_s=_number(env, "FEEDBENCH_STUCK_GRACE_S", 15.0, 0.0),
        fork_tries=_number(env, "FEEDBENCH_FORK_TRIES", 3, 1, whole=True),
        cache=env.get("FEEDBENCH_CACHE") or None,
        tf_logs=env.get("FEEDBENCH_TF_LOGS") == "1",
        shm_start_method=_choice(env, "FEEDBENCH_SHM_START_METHOD", START_METHODS),
        shm_hand_off=_choice(env, "FEEDBENCH_SHM_HAND_OFF", HAND_OFF_CHOICES) or "auto",
        tfdata_service=env.get("FEEDBENCH_TFDATA_SERVICE") or None,
        device=env.get("FEEDBENCH_DEVICE") or None,
        child_of=int(parent) if parent and parent.isdigit() else None,
    )


def environ(options: Settings) -> dict[str, str]:
    """The ``FEEDBENCH_*`` variables ``read`` turns into ``options`` (those at their default left out):
    what a child process is given, so it runs under the settings in force here."""
    found = {}
    for name in Settings.__dataclass_fields__:
        value = getattr(options, name)
        if value == getattr(_DEFAULTS, name):
            continue
        if isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, bool):
            text = "1" if value else ""
        else:
            text = str(value)
        found[f"FEEDBENCH_{name.upper()}"] = text
    return found


_DEFAULTS = Settings()
_in_force: list[Settings] = []  # what entry points applied, innermost last; read by every thread
_in_force_lock = threading.Lock()


def current() -> Settings:
    """The settings in force: those the innermost entry point applied, else the environment's now."""
    innermost = _in_force[-1:]  # one atomic read: another thread may leave meanwhile
    return innermost[0] if innermost else read()


@contextlib.contextmanager
def applied(options: Settings) -> Iterator[Settings]:
    """Put ``options`` in force for the block, in every thread; blocks that overlap in threads each
    take theirs out when they end, whichever ends first."""
    with _in_force_lock:
        _in_force.append(options)
    try:
        yield options
    finally:
        with _in_force_lock:
            for index in range(len(_in_force) - 1, -1, -1):
                if _in_force[index] is options:
                    del _in_force[index]
                    break
