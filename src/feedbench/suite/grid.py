"""A benchmark grid: what is measured, under which settings, with which limits and skip rules.

feedbench's own suite (``benchmarks/``) and a suite that ``feedbench init`` writes into a user's
repository both describe their grid with a ``Grid``; nothing here reads the environment. A
setting that does not apply is skipped (NotImplementedError, shown by asv as n/a), never faked.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field

# asv shows a benchmark as n/a (not failed) when setup raises NotImplementedError, and when the
# benchmark itself raises this subclass of it; a plain NotImplementedError there is a failure.
from asv_runner.benchmarks.mark import SkipNotImplemented

from feedbench.core import scratch
from feedbench.core.spec import Spec
from feedbench.generators.registry import BUILTINS

CORES = os.cpu_count() or 1
SWEEP_TIMEOUT_S = 3600  # a whole grid's measurement, in setup_cache
# Keras worker processes that make no progress (no batch, no CPU) for this long fail the run at
# once (feedbench.fit.supervise.STALL_S): a deadlocked forked worker costs seconds, not the limit.
STALL_S = 5.0
# One try of a run that failed after TensorFlow ran in forked workers: such a setting's figures are
# n/a here whatever its tries gave (FORKED_TENSORFLOW_NA), so a try again buys only minutes.
MEASURING_ENV = {"FEEDBENCH_STALL_S": str(STALL_S), "FEEDBENCH_FORK_TRIES": "1"}
FORKED_TENSORFLOW_NA = (
    "TensorFlow ran in this setting's forked workers, where it hangs or crashes at random: its figures "
    "came in some runs and not in others; determinism.Stream.track_forked_tensorflow tracks the hazard"
)
# The PyDatasets built to show a determinism flaw: measured with the copy workload on the small source
# only (Grid.skip_reason); under Keras's worker pool their throughput would measure keyed's again.
FLAW_DEMOS = ("seed_unseeded", "seed_reseeded", "seed_bounded", "numpy_global")
AXES = ("implementation", "workload", "workers", "use_multiprocessing", "size")


def use_private_scratch() -> None:
    """Give this benchmark process tree a temporary folder of its own, removed at its exit.

    TensorFlow's AutoGraph removes its files only at a normal exit, and asv's benchmark processes end
    with os._exit; asv's forkserver imports the benchmark modules once, forks every benchmark from it
    and exits normally. A folder whose maker was killed is removed by the next feedbench command."""
    import atexit

    if not scratch.has_private_folder():  # a test importing the benchmarks has its own already
        atexit.register(scratch.remove_private_folders)
        scratch.use_private_folder()


@dataclass(frozen=True, slots=True)
class Grid:
    """The settings a suite measures.

    Attributes:
        implementations: registry names measured, built-ins or plug-ins.
        plugins: ``[name=]package.module:callable`` plug-ins that join the registry, in this process
            and in the measuring children (entry points join without being named here).
        workloads, workers, multiprocessing, sizes: the grid's axes (AXES order).
        samples, batch_size: per source size.
        epochs: per run; the first is a warm-up. memory_epochs: the memory run's, long enough for the
            leak verdicts (feedbench.measure.leaks.MIN_EPOCHS and more).
        reference: the implementation whose serial setting each throughput is divided by, measured
            ``reference_rounds`` times spread over the run (the median).
        run_timeout_s: one run's limit; a run that deadlocks fails here.
        python_iters, io_latency_s: the python and io workloads' per-sample cost.
        traced: False for factories that feed their own data: the checks that need sample ids are n/a.
    """

    implementations: tuple[str, ...]
    plugins: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ("copy",)
    workers: tuple[int, ...] = (1, 2)
    multiprocessing: tuple[bool, ...] = (False, True)
    sizes: tuple[str, ...] = ("small",)
    samples: dict = field(default_factory=lambda: {"small": 1024, "large": 256})
    batch_size: dict = field(default_factory=lambda: {"small": 64, "large": 32})
    epochs: int = 3
    memory_epochs: int = 8
    reference: str = "keyed"
    reference_rounds: int = 3
    run_timeout_s: float = 60.0
    python_iters: int = 2000
    io_latency_s: float = 0.002
    traced: bool = True

    # ------------------------------------------------------------------ which settings run

    def skip_reason(self, impl, workload="copy", workers=1, multiprocessing=False, size="small"):
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

    def epoch_time_skip_reason(self, impl, workers=1, multiprocessing=False):
        """Why an epoch timed by asv (the copy workload on the small source) skips a setting: the
        grid's reasons, and the determinism-flaw demos, whose epoch under Keras's worker pool is
        keyed's again (Throughput tracks their samples/s)."""
        if impl in FLAW_DEMOS:
            return (
                f"{impl} shows a determinism flaw; its epoch is timed by Keras's worker pool as keyed's is "
                "(Throughput tracks its samples/s; keeps a full run within budget)"
            )
        return self.skip_reason(impl, "copy", workers, multiprocessing, "small")

    def applicable(self, params):
        """The parameter tuples of a grid's axes that are run here."""
        return [p for p in itertools.product(*params) if self.skip_reason(*p) is None]

    def spec(self, impl, workload="copy", workers=1, multiprocessing=False, size="small", seed=0, shuffle=False):
        return Spec(
            impl,
            size=size,
            n_samples=self.samples[size],
            batch_size=self.batch_size[size],
            workload=workload,
            workers=workers,
            use_multiprocessing=multiprocessing,
            seed=seed,
            shuffle=shuffle,
            python_iters=self.python_iters,
            io_latency_s=self.io_latency_s,
            traced=self.traced,
        )

    def reference_params(self, params):
        """The reference setting a grid setting's throughput is compared with (AXES order)."""
        _, workload, _, _, size = params
        return (self.reference, workload, 1, False, size)

    # ------------------------------------------------------------------ measuring

    def measured(self, params, measures, shuffle=False, repeats=1, extra=(), epochs=None, extra_rounds=1):
        """Run the measurements for every applicable setting of a grid, and the ``extra`` parameter
        tuples (a reference the grid compares with), for setup_cache.

        With ``extra_rounds`` > 1 the extra settings are measured that many times, at the start of the
        run, at its end and evenly between, each the median: a ratio to a reference measured once
        carries that one measurement's noise into every setting compared with it.

        Returns {parameter tuple: SettingResult}; a setting that failed carries its reason.
        """
        from feedbench.measure.setting import median_of
        from feedbench.run.sweep import sweep

        references = [p for p in dict.fromkeys(extra) if self.skip_reason(*p) is None]
        settings = [p for p in self.applicable(params) if p not in references]
        order = spread(settings, references, extra_rounds)
        records = sweep(
            [self.spec(*p, shuffle=shuffle) for p in order],
            measures,
            epochs or self.epochs,
            self.run_timeout_s,
            plugins=self.plugins,
            env=MEASURING_ENV,
            repeats=repeats,
        )
        found = {}
        for p, record in zip(order, records):
            found.setdefault(p, []).append(record)
        return {p: median_of(results) if len(results) > 1 else results[0] for p, results in found.items()}


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


# ---------------------------------------------------------------------- reading the figures


def check_measured(cache, params, skip):
    """For a benchmark's setup: skip (n/a) a setting that does not apply here (``skip`` says why)."""
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


class Measured:
    """Base of the benchmarks whose figures come from one sweep per commit.

    A subclass names its ``grid``, its ``params`` / ``param_names`` (a subset of AXES), the
    measurement ``group`` and the axes it holds ``fixed``; its ``track_`` methods call
    ``self.figure(cache, params, key)``. It also defines its own ``setup_cache`` returning
    ``self.measure()``: asv keys a cache by where its function is written, so one inherited
    setup_cache would be shared by all.
    """

    grid: Grid
    group = ""
    fixed: dict = {}
    shuffle = False
    repeats = 1  # rounds over the grid; each figure the median (feedbench.run.sweep)
    epochs: int | None = None  # the grid's
    timeout = 60

    def _grid_params(self, params):
        given = dict(zip(self.param_names, params))
        return tuple(given.get(axis, self.fixed.get(axis)) for axis in AXES)

    def measure(self, extra=(), extra_rounds=1):
        axes = dict(zip(self.param_names, self.params))
        grid_axes = [axes.get(axis, [self.fixed.get(axis)]) for axis in AXES]
        return self.grid.measured(
            grid_axes, (self.group,), self.shuffle, self.repeats, extra, self.epochs, extra_rounds
        )

    def setup(self, cache, *params):
        check_measured(cache, self._grid_params(params), self.grid.skip_reason)

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
