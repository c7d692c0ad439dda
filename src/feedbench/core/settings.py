"""Every ``FEEDBENCH_*`` environment variable feedbench reads: its name, default and meaning.

The reference page (``feedbench docs``) is written from ``SETTINGS``, and a test fails when the
code names a ``FEEDBENCH_*`` variable this table does not declare, or declares one nobody reads.
"""

from __future__ import annotations

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
