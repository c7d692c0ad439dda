"""feedbench's own grid (``GRID``), its skip rules, and the training grid.

Benchmarks are declarative: they name a grid from here and a measurement from
``feedbench``; nothing is measured in this package. A setting that does not
apply is skipped (NotImplementedError, shown as n/a), never faked.

``FEEDBENCH_GRID=quick`` selects a smaller grid for smoke runs (CI, --quick).
"""

import itertools

from asv_runner.benchmarks.mark import SkipNotImplemented  # noqa: F401 (the benchmarks' n/a)

from feedbench.core import settings
from feedbench.generators.registry import BUILTINS, registry
from feedbench.suite import grid as suite_grid
from feedbench.suite.grid import (  # noqa: F401 (the benchmark modules' names)
    FLAW_DEMOS,
    MEASURING_ENV,
    SWEEP_TIMEOUT_S,
    Grid,
    Measured,
    check_measured,
    figure,
    figure_list,
    ratio,
)

suite_grid.use_private_scratch()

# asv lists a benchmark's parameters when it imports the module, so the grid is read here.
OPTIONS = settings.read()
QUICK = OPTIONS.grid == "quick"

# The quick grid's built-ins, one of each kind a first run should show: the reference PyDataset, a
# PyDataset with a known flaw (a red cell proves the checks run), tf.data, and shm.
QUICK_BUILTINS = ("keyed", "numpy_global", "tfdata", "shm")

# Built-ins, then plug-ins (entry points, $FEEDBENCH_PLUGINS); the quick grid keeps QUICK_BUILTINS
# and every plug-in. FEEDBENCH_IMPLEMENTATIONS (comma-separated names) narrows the grid to those.
IMPLEMENTATIONS = [name for name in registry() if not QUICK or name in QUICK_BUILTINS or name not in BUILTINS]
if OPTIONS.implementations:
    IMPLEMENTATIONS = list(OPTIONS.implementations)
MULTIPROCESSING = [False, True]

# 8 memory epochs: a leak verdict needs leaks.MIN_EPOCHS. Throughput is also a ratio to keyed's serial
# setting timed in the same run, so a faster or busier machine moves both alike (suite.grid).
GRID = Grid(
    implementations=tuple(IMPLEMENTATIONS),
    workloads=("copy",) if QUICK else ("copy", "numpy", "python", "io"),
    workers=(1, 2) if QUICK else (1, 2, 4, 8),
    multiprocessing=tuple(MULTIPROCESSING),
    sizes=("small",) if QUICK else ("small", "large"),
    samples={"small": 512 if QUICK else 1024, "large": 256},
    epochs=2 if QUICK else 3,
    memory_epochs=8,
    reference_rounds=1 if QUICK else 3,
    run_timeout_s=20.0 if QUICK else 60.0,
)
WORKERS = list(GRID.workers)
REFERENCE = GRID.reference


# --------------------------------------------------------------------------- training

TRAINING_WORKERS = [1, 2]
DEVICES = ["cpu", "gpu"]
TRAINING_SEEDS = 2 if QUICK else 3
TRAINING_TIMEOUT_S = 60.0  # one model.fit; a deadlocked forked worker fails here


def training_task(device="cpu"):
    """The CPU task is small (32x32, a two-convolution net, so 2 cores train it in seconds); the GPU
    task has 128x128 images and the built-in model sized to them, a step the GPU notices."""
    from feedbench.fit.training import Task

    epochs = 3 if QUICK else 5
    if device == "gpu":
        return Task(size="large", n_train=2048, n_val=512, batch_size=64, epochs=epochs)
    return Task(epochs=epochs)


def training_skip_reason(impl, workers=1, multiprocessing=False, device="cpu"):
    if device == "gpu":
        from feedbench.fit.training import gpu_present

        if not gpu_present():
            return "no GPU on this machine (nvidia-smi lists none): the GPU variant is skipped"
    return GRID.skip_reason(impl, "copy", workers, multiprocessing, "small")


def measured_training(params):
    """Train every applicable (implementation, workers, use_multiprocessing, device), per device."""
    from feedbench.fit.training import device_env
    from feedbench.run.sweep import sweep

    settings = [p for p in itertools.product(*params) if training_skip_reason(*p) is None]
    cache = {}
    for device in DEVICES:
        chosen = [p for p in settings if p[3] == device]
        if not chosen:
            continue
        task = training_task(device)
        specs = [task.spec(impl, workers=workers, use_multiprocessing=mp) for impl, workers, mp, _ in chosen]
        records = sweep(
            specs,
            ("training",),
            task.epochs,
            TRAINING_TIMEOUT_S,
            seeds=TRAINING_SEEDS,
            env={**device_env(device), **MEASURING_ENV},
        )
        cache.update(zip(chosen, records))
    return cache
