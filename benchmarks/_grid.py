"""The one place that defines the benchmark grids and their skip rules.

Benchmarks are declarative: they name a grid from here and a measurement from
``feedbench``; nothing is measured in this package. A setting that does not
apply is skipped (NotImplementedError, shown as n/a), never faked.

``FEEDBENCH_GRID=quick`` selects a smaller grid for smoke runs (CI, --quick).
"""

import atexit
import itertools
import math
import os

# asv shows a benchmark as n/a (not failed) when setup raises NotImplementedError, and when the
# benchmark itself raises this subclass of it; a plain NotImplementedError there is a failure.
from asv_runner.benchmarks.mark import SkipNotImplemented

from feedbench.core import scratch
from feedbench.core.spec import Spec
from feedbench.generators.registry import BUILTINS, registry

# What the measured code leaves in the temporary folder goes with the run: TensorFlow's AutoGraph
# removes its files only at a normal exit, and asv's benchmark processes end with os._exit. asv's
# forkserver imports this module once, forks every benchmark from it and exits normally at the end;
# a folder whose maker was killed is removed by the next feedbench command.
if not scratch.has_private_folder():  # a test run importing this module has its own already
    atexit.register(scratch.remove_private_folders)
    scratch.use_private_folder()

QUICK = os.environ.get("FEEDBENCH_GRID", "full") == "quick"
CORES = os.cpu_count() or 1

# The quick grid's built-ins, one of each kind a first run should show: the reference PyDataset, a
# PyDataset with a known flaw (a red cell proves the checks run), tf.data, and shm.
QUICK_BUILTINS = ("keyed", "numpy_global", "tfdata", "shm")

# Built-ins, then plug-ins (entry points, $FEEDBENCH_PLUGINS); the quick grid keeps QUICK_BUILTINS
# and every plug-in. FEEDBENCH_IMPLEMENTATIONS (comma-separated names) narrows the grid to those.
IMPLEMENTATIONS = [name for name in registry() if not QUICK or name in QUICK_BUILTINS or name not in BUILTINS]
if os.environ.get("FEEDBENCH_IMPLEMENTATIONS"):
    IMPLEMENTATIONS = [name.strip() for name in os.environ["FEEDBENCH_IMPLEMENTATIONS"].split(",") if name.strip()]
WORKLOADS = ["copy"] if QUICK else ["copy", "numpy", "python", "io"]
WORKERS = [1, 2] if QUICK else [1, 2, 4, 8]
MULTIPROCESSING = [False, True]
SIZES = ["small"] if QUICK else ["small", "large"]

SAMPLES = {"small": 512 if QUICK else 1024, "large": 256}
BATCH_SIZE = {"small": 64, "large": 32}
EPOCHS = 2 if QUICK else 3
# Memory is tracked as the median epoch's peak (feedbench.measure.memory), and its leak verdicts need a
# soak of leaks.MIN_EPOCHS epochs or more (the first is a warm-up); the median over these 8 epochs is
# not moved by one epoch's extreme either.
MEMORY_EPOCHS = 8
# Throughput is also tracked as a ratio to this loader's serial setting (1 worker, threads) with the
# same workload and source, measured in the same run: a machine that is faster or busier today moves
# both alike, so the ratio keeps only what the implementation changed.
REFERENCE = "keyed"
REFERENCE_ROUNDS = 1 if QUICK else 3  # measured at the start, middle and end of the grid; the median
# A run that deadlocks (TensorFlow ops in a forked worker can) fails at this limit.
RUN_TIMEOUT_S = 20.0 if QUICK else 60.0
SWEEP_TIMEOUT_S = 3600  # a whole grid's measurement, in setup_cache
# Keras worker processes that make no progress (no batch, no CPU) for this long fail the run at
# once (feedbench.fit.supervise.STALL_S): a forked worker deadlocked inside TensorFlow then
# costs seconds, not the run's whole limit.
STALL_S = 5.0
# One try of a run that failed after TensorFlow ran in forked workers: such a setting's figures are
# n/a here whatever its tries gave (FORKED_TENSORFLOW_NA), so a try again buys only minutes.
MEASURING_ENV = {"FEEDBENCH_STALL_S": str(STALL_S), "FEEDBENCH_FORK_TRIES": "1"}
FORKED_TENSORFLOW_NA = (
    "TensorFlow ran in this setting's forked workers, where it hangs or crashes at random: its figures "
    "came in some runs and not in others; determinism.Stream.track_forked_tensorflow tracks the hazard"
)
IO_LATENCY_S = 0.002
# The PyDatasets built to show a determinism flaw run under Keras's worker pool exactly as keyed
# does: under the numpy, python and io workloads, or on the large source, their throughput and
# memory would measure that pool (and keyed's arrays) again. They are measured with the copy
# workload on the small source only, which shows their own per-batch cost; their determinism and
# training are measured in full.
FLAW_DEMOS = ("seed_unseeded", "seed_reseeded", "seed_bounded", "numpy_global")
PYTHON_ITERS = 2000


def skip_reason(impl, workload="copy", workers=1, multiprocessing=False, size="small"):
    """Why a setting is not run here, or None when it is."""
    if workers > 2 * CORES:
        return f"workers={workers} is more than twice this machine's {CORES} cores"
    builtin = BUILTINS.get(impl)
    if builtin is not None:
        missing = builtin.missing_reason()
        if missing:
            return missing
        parallel = builtin.not_applicable(Spec(impl, workers=workers, use_multiprocessing=multiprocessing))
        if parallel:
            return f"{impl} is a {builtin.family}: " + "; ".join(sorted(set(parallel.values())))
        reason = builtin.workload_reason(workload)
        if reason:
            return reason
    if size == "large" and workload != "copy":
        return "large sources are measured with the copy workload only (keeps a full run within budget)"
    if impl in FLAW_DEMOS and (workload, size) != ("copy", "small"):
        return (
            f"{impl} is measured with the copy workload on the small source only: it shows a determinism "
            f"flaw, and with the {workload} workload on the {size} source it would measure Keras's worker "
            "pool again, as keyed does (keeps a full run within budget)"
        )
    return None


def epoch_time_skip_reason(impl, workers=1, multiprocessing=False):
    """Why ``EpochTime`` (an epoch timed by asv, the copy workload on the small source) skips a
    setting: the grid's reasons, and the determinism-flaw demos, whose epoch under Keras's worker
    pool is keyed's again (Throughput tracks their samples/s; their seeds' TensorFlow ops in forked
    workers made this timing fail in some runs and not others)."""
    if impl in FLAW_DEMOS:
        return (
            f"{impl} shows a determinism flaw; its epoch is timed by Keras's worker pool as keyed's is "
            "(Throughput tracks its samples/s; keeps a full run within budget)"
        )
    return skip_reason(impl, "copy", workers, multiprocessing, "small")


def spec(impl, workload="copy", workers=1, multiprocessing=False, size="small", seed=0, shuffle=False):
    return Spec(
        impl,
        size=size,
        n_samples=SAMPLES[size],
        batch_size=BATCH_SIZE[size],
        workload=workload,
        workers=workers,
        use_multiprocessing=multiprocessing,
        seed=seed,
        shuffle=shuffle,
        python_iters=PYTHON_ITERS,
        io_latency_s=IO_LATENCY_S,
    )


def applicable(params):
    """The parameter tuples of a grid that are run here."""
    return [p for p in itertools.product(*params) if skip_reason(*p) is None]


def measured(params, measures, shuffle=False, repeats=1, extra=(), epochs=EPOCHS, extra_rounds=1):
    """Run the measurements for every applicable setting of a grid, and the ``extra`` parameter
    tuples (a reference the grid compares with), for setup_cache.

    With ``extra_rounds`` > 1 the extra settings are measured that many times, at the start of the
    run, at its end and evenly between, each the median: a ratio to a reference measured once
    carries that one measurement's noise into every setting compared with it.

    Returns {parameter tuple: SettingResult}; a setting that failed carries its reason.
    """
    from feedbench.measure.setting import median_of
    from feedbench.run.sweep import sweep

    references = [p for p in dict.fromkeys(extra) if skip_reason(*p) is None]
    settings = [p for p in applicable(params) if p not in references]
    order = spread(settings, references, extra_rounds)
    records = sweep(
        [spec(*p, shuffle=shuffle) for p in order],
        measures,
        epochs,
        RUN_TIMEOUT_S,
        env=MEASURING_ENV,
        repeats=repeats,
    )
    found = {}
    for params, record in zip(order, records):
        found.setdefault(params, []).append(record)
    return {params: median_of(results) if len(results) > 1 else results[0] for params, results in found.items()}


def spread(settings, references, rounds):
    """``settings`` with ``references`` placed ``rounds`` times: first, last and evenly between."""
    if rounds <= 1 or not references:
        return list(settings) + list(references)
    order = []
    for chunk in range(rounds - 1):
        order += (
            references + settings[chunk * len(settings) // (rounds - 1) : (chunk + 1) * len(settings) // (rounds - 1)]
        )
    return order + references


def reference_params(params):
    """The reference setting a grid setting's throughput is compared with (AXES order)."""
    _, workload, _, _, size = params
    return (REFERENCE, workload, 1, False, size)


def check_measured(cache, params, skip=skip_reason):
    """For a benchmark's setup: skip (n/a) a setting that does not apply here."""
    reason = skip(*params)
    if reason:
        raise NotImplementedError(reason)
    result = cache[tuple(params)]
    if result.skipped:
        raise NotImplementedError(result.skipped)


def ratio(cache, params, other, group, key, other_key=None):
    """``key`` of setting ``params`` over ``other_key`` (``key`` when None) of setting ``other``.

    The other setting failing fails the ratio, with which setting and why (a RuntimeError, so asv
    shows it failed); one not measured here makes it n/a.
    """
    if other not in cache:
        raise SkipNotImplemented(f"the setting compared with, {other}, is not measured here")
    value = figure(cache, params, group, key)  # this setting's own n/a or failure first
    if cache[other].error:
        raise RuntimeError(f"the setting compared with, {other}, failed: {cache[other].error}")
    return value / figure(cache, other, group, other_key or key)


def measured_result(cache, params):
    """A measured setting's result; a failed setting raises, so asv shows it failed, and one where
    TensorFlow ran in forked workers is n/a (its hazard flag is the figure that repeats)."""
    result = cache[tuple(params)]
    if result.forked_tensorflow:
        raise SkipNotImplemented(FORKED_TENSORFLOW_NA)
    if result.error:
        raise RuntimeError(result.error)  # shown as failed in the results and the HTML
    return result


def figure(cache, params, group, key):
    """One figure of a measured setting (``measured_result``: a failed setting raises, a
    forked-TensorFlow one is n/a).

    ``group`` is a measure of ``feedbench.measure.setting.MEASURES`` and ``key`` a field of its
    figures: a name that is neither raises (a typo is an error, never a silent n/a).
    """
    from feedbench.measure.setting import figure_of

    value = figure_of(measured_result(cache, params), group, key)
    if value is None:  # not computable for this generator: asv records it as missing
        return float("nan")
    return float(value)


def figure_list(cache, params, group, key) -> list[float]:
    """A figure that is a list of samples (``figure``'s n/a and failures), [] where there is none."""
    from feedbench.measure.setting import figure_of

    return [float(v) for v in figure_of(measured_result(cache, params), group, key) or []]


def with_statistics(cache, params, group, key, samples_key, over=None):
    """A figure with the samples it is the median of, as asv takes a timing's: asv records their
    median (the figure itself) and its statistics (a 99 % interval, quartiles), and ``asv compare``
    (and ``feedbench report --agreement``) call a change only where those say the two runs differ.
    ``over``: the setting whose figure divides this one's and its samples alike (``ratio``, with
    its n/a and failures). Under 2 samples, the bare figure."""
    value = figure(cache, params, group, key) if over is None else ratio(cache, params, over, group, key)
    scale = 1.0 if over is None else figure(cache, over, group, key)
    samples = figure_list(cache, params, group, samples_key)
    if len(samples) < 2 or math.isnan(value):
        return value
    return {"samples": [s / scale for s in samples], "number": 1}


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
    return skip_reason(impl, "copy", workers, multiprocessing, "small")


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


AXES = ("implementation", "workload", "workers", "use_multiprocessing", "size")


class Measured:
    """Base of the benchmarks whose figures come from one sweep per commit.

    A subclass names its ``params`` / ``param_names`` (a subset of AXES), the
    measurement ``group`` and the axes it holds ``fixed``; its ``track_``
    methods call ``self.figure(cache, params, key)``. It also defines its own
    ``setup_cache`` returning ``self.measure()``: asv keys a cache by where its
    function is written, so one inherited setup_cache would be shared by all.
    """

    group = ""
    fixed: dict = {}
    shuffle = False
    repeats = 1  # rounds over the grid; each figure the median (feedbench.run.sweep)
    epochs = EPOCHS
    timeout = 60

    def _grid_params(self, params):
        given = dict(zip(self.param_names, params))
        return tuple(given.get(axis, self.fixed.get(axis)) for axis in AXES)

    def measure(self, extra=(), extra_rounds=1):
        axes = dict(zip(self.param_names, self.params))
        grid_axes = [axes.get(axis, [self.fixed.get(axis)]) for axis in AXES]
        return measured(grid_axes, (self.group,), self.shuffle, self.repeats, extra, self.epochs, extra_rounds)

    def setup(self, cache, *params):
        check_measured(cache, self._grid_params(params))

    def figure(self, cache, params, key):
        return figure(cache, self._grid_params(params), self.group, key)

    def result(self, cache, params):
        return measured_result(cache, self._grid_params(params))

    def problem(self, cache, params, check, judged_by):
        """1 where ``check`` is among the setting's problems as `feedbench profile` judges it, 0 where
        it passed, n/a where profile could not judge it (``judged_by``, the figure it reads, is None)."""
        if math.isnan(self.figure(cache, params, judged_by)):
            return math.nan
        return float(check in self.result(cache, params).problems)
