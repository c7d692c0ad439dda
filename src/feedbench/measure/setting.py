"""One setting, every measure asked for: the table of measures and the typed result they fill.

``MEASURES`` names each measure, what it costs (runs under the time limit, per seed for
training) and the function that fills its part of a ``SettingResult``. The sweep, profile,
findings, the shm targets and the asv grid all go through ``measure_setting``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from feedbench.core import settings
from feedbench.core.child import ChildFailed
from feedbench.core.errors import FeedbenchError, ForkedTensorflowFailed, MissingPackage
from feedbench.core.records import Record
from feedbench.core.spec import Spec, not_applicable
from feedbench.fit import fork_hazard
from feedbench.fit.tap import FitStreamFigures
from feedbench.fit.training import TrainingSummary
from feedbench.generators import build
from feedbench.measure.determinism import DeterminismFigures, measure_determinism
from feedbench.measure.memory import MemoryFigures, measure_memory
from feedbench.measure.step_bound import StepBoundFigures, measure_step_bound
from feedbench.measure.throughput import POOLED, ThroughputFigures, measure_throughput

# Bumped whenever a key of the JSON below changes; CHANGELOG.md says what changed.
SCHEMA_VERSION = 8
# A run that failed after TensorFlow ran in forked workers (NOTE [ Fork hazard ])
# is tried again; a setting's failed tries may take this many runs' limits (training's fail late).
FORK_RETRY_BUDGET = 2.0


def fork_tries() -> int:
    """Tries of a measure whose run failed after TensorFlow ran in forked workers
    (FEEDBENCH_FORK_TRIES, 3; the asv suite sets 1: it tracks such a setting's hazard flag alone)."""
    return settings.current().fork_tries


@dataclass
class SettingResult(Record):
    """Everything measured for one setting; a figure that could not be computed is None with a reason."""

    workers: int
    use_multiprocessing: bool
    error: str | None = None  # the run failed: one line saying why
    skipped: str | None = None  # the setting does not apply to this implementation: why
    throughput: ThroughputFigures | None = None
    memory: MemoryFigures | None = None
    determinism: DeterminismFigures | None = None
    training: TrainingSummary | None = None
    fit_stream: FitStreamFigures | None = None
    step_bound: StepBoundFigures | None = None
    null_reasons: dict[str, str] = field(default_factory=dict)  # "group.figure" -> why it is None
    problems: list[str] = field(default_factory=list)  # checks that failed (determinism, settings applied)
    applied: dict | None = None  # the parallel settings the dataset really had, where they differ from asked
    forked_tensorflow: str | None = None  # where TensorFlow ran in forked workers; runs that failed for it

    @classmethod
    def of(cls, spec: Spec, **values) -> SettingResult:
        return cls(spec.workers, spec.use_multiprocessing, **values)

    @property
    def ok(self) -> bool:
        """Measured, without an error (a skipped setting is not ok: nothing was measured)."""
        return self.error is None and self.skipped is None


@dataclass(frozen=True)
class Context:
    epochs: int
    timeout_s: float
    plugins: tuple[str, ...] = ()
    seeds: int = 1
    model: str | None = None  # the training measure's model ("module:callable"); None: built-in
    soak_epochs: int | None = None  # the memory measure's epochs, long enough for leak verdicts; None: epochs


def _throughput(spec: Spec, ctx: Context, result: SettingResult) -> None:
    result.throughput = measure_throughput(spec, ctx.epochs, ctx.timeout_s, plugins=ctx.plugins).figures()


def _memory(spec: Spec, ctx: Context, result: SettingResult) -> None:
    epochs = ctx.soak_epochs or ctx.epochs
    memory = measure_memory(spec, epochs, ctx.timeout_s * soak_share(ctx.epochs, epochs), plugins=ctx.plugins)
    result.memory = memory.figures()
    if memory.leak_reason:
        for name in MemoryFigures.__dataclass_fields__:
            if name.startswith("growth_") or name == "leaks":
                result.null_reasons[f"memory.{name}"] = memory.leak_reason
    result.problems += memory.problems()
    if memory.epoch_peak_pss_added_bytes is None:
        result.null_reasons["memory.epoch_peak_pss_added_bytes"] = memory.epoch_peak_reason


def soak_share(epochs: int, soak: int | None) -> float:
    """How many runs' time limits a soak of ``soak`` epochs is given, where a run has ``epochs``."""
    return max(1.0, (soak or epochs) / epochs)


def _training(spec: Spec, ctx: Context, result: SettingResult) -> None:
    from feedbench.fit.training import measure_training

    result.training = measure_training(
        spec, ctx.epochs, ctx.seeds, ctx.timeout_s, ctx.plugins, model=ctx.model
    ).summary()


def _fit_stream(spec: Spec, ctx: Context, result: SettingResult) -> None:
    from feedbench.fit.tap import fit_stream

    result.fit_stream = fit_stream(build(spec, ctx.plugins), ctx.epochs, ctx.timeout_s).figures(spec.n_samples)


def _step_bound(spec: Spec, ctx: Context, result: SettingResult) -> None:
    result.step_bound = measure_step_bound(spec, ctx.epochs, ctx.timeout_s, plugins=ctx.plugins)


def _determinism(spec: Spec, ctx: Context, result: SettingResult) -> None:
    determinism = measure_determinism(spec, ctx.epochs, ctx.timeout_s, plugins=ctx.plugins)
    result.determinism = determinism.figures()
    result.null_reasons.update({f"determinism.{k}": v for k, v in determinism.reasons.items()})
    result.problems += determinism.problems()


@dataclass(frozen=True)
class Measure:
    name: str
    runs: int  # runs of the generator under the time limit, per setting (per seed when per_seed)
    per_seed: bool
    fill: Callable[[Spec, Context, SettingResult], None]


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("throughput", 1, False, _throughput),
        Measure("memory", 1, False, _memory),
        Measure("training", 2, True, _training),  # the implementation's fit and its baseline
        Measure("fit_stream", 1, False, _fit_stream),
        Measure("step_bound", 2, False, _step_bound),  # the ceiling and the loader, each a fit
        Measure("determinism", 3, False, _determinism),  # the setting, a repeat, the serial reference
    )
}
PROFILE_MEASURES = ("throughput", "memory", "determinism")


def check_measures(names) -> tuple[str, ...]:
    unknown = [name for name in names if name not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; expected some of {list(MEASURES)}")
    return tuple(names)


def runs_per_setting(names, seeds: int = 1) -> int:
    """How many runs one setting makes, each under its own time limit."""
    return sum(MEASURES[n].runs * (seeds if MEASURES[n].per_seed else 1) for n in check_measures(names))


def figure_of(result: SettingResult, measure: str, name: str):
    """One figure of a result by name (for tables of names, like the asv grid); a wrong name raises."""
    check_measures([measure])
    figures_type = typing.get_type_hints(SettingResult)[measure]
    known = {
        f.name
        for cls in typing.get_args(figures_type)
        if dataclasses.is_dataclass(cls)
        for f in dataclasses.fields(cls)
    }
    if name not in known:
        raise AttributeError(f"{measure} has no figure {name!r}; expected one of {sorted(known)}")
    group = getattr(result, measure)
    return None if group is None else getattr(group, name)


def median_of(repeats: list[SettingResult]) -> SettingResult:
    """One setting measured several times, as one result: each numeric figure the median over the
    repeats that have it; the problems any repeat found. A repeat that failed fails the setting
    (with which repeat and why): a setting that fails now and then is not a figure to track.
    """
    if not repeats:
        raise ValueError("median_of: no repeats given; expected at least one result")
    for number, result in enumerate(repeats, 1):
        if result.error:
            return dataclasses.replace(result, error=f"repeat {number} of {len(repeats)}: {result.error}")
    if any(result.skipped for result in repeats):
        return next(result for result in repeats if result.skipped)
    first = repeats[0]
    groups = {
        name: _median_record([getattr(r, name) for r in repeats])
        for name in MEASURES
        if getattr(first, name) is not None
    }
    problems = list(dict.fromkeys(p for r in repeats for p in r.problems))
    null_reasons = {k: v for r in repeats for k, v in r.null_reasons.items()}
    forked = next((r.forked_tensorflow for r in repeats if r.forked_tensorflow), None)
    return dataclasses.replace(first, problems=problems, null_reasons=null_reasons, forked_tensorflow=forked, **groups)


def _median_record(records: list):
    present = [r for r in records if r is not None]
    values, medians = {}, {}
    for item in dataclasses.fields(present[0]):
        if item.metadata.get(POOLED):  # samples: every repeat's together, and their median the figure
            pooled = [x for r in present for x in (getattr(r, item.name) or [])]
            values[item.name] = pooled or None
            if pooled:
                medians[item.metadata[POOLED]] = statistics.median(pooled)
            continue
        numbers = [getattr(r, item.name) for r in present]
        numbers = [n for n in numbers if isinstance(n, int | float) and not isinstance(n, bool)]
        if numbers:  # a figure that is not a number (a list, a flag) is the first repeat's
            values[item.name] = statistics.median(numbers)
    return dataclasses.replace(present[0], **{**values, **medians})


def measure_setting(spec: Spec, measures=PROFILE_MEASURES, ctx: Context | None = None) -> SettingResult:
    """The measurements of one setting; a failure is the result's one-line ``error``."""
    ctx = ctx or Context(epochs=3, timeout_s=120.0)
    result = SettingResult.of(spec)
    try:
        built = build(spec, ctx.plugins)  # the family, and the settings the dataset really takes
        try:
            # a loader with workers of its own maps the settings it can (and says which it cannot)
            reasons = built.not_applicable if built.applied_settings is not None else not_applicable(built.family, spec)
            applied = built.applied()
        finally:
            built.close()
        if reasons:
            result.skipped = "; ".join(sorted(set(reasons.values())))
            return result
        if applied and any(applied[key] != getattr(spec, key) for key in applied):
            result.applied = applied
            result.problems.append("setting_not_applied")
        forks_from = fork_hazard.mark()
        retries = _ForkRetries(FORK_RETRY_BUDGET * ctx.timeout_s)
        try:
            for name in MEASURES:  # the table's order: determinism, the longest, last
                if name in measures:
                    retries.fill(MEASURES[name], spec, ctx, result)
        finally:
            forked = fork_hazard.since(forks_from)
            if forked:
                result.problems.append("forked_tensorflow")
                result.forked_tensorflow = fork_hazard.describe(forked) + retries.said()
    except MissingPackage as exc:  # not this machine's to measure: n/a with the reason
        result.skipped = str(exc)
    except (FeedbenchError, ValueError) as exc:
        result.error = str(exc).splitlines()[0]
    return result


class _ForkRetries:
    """Runs each measure, and again when its run failed because a worker hung or died after
    TensorFlow ran in forked workers (whether such a run fails is chance; the verdict is not): at
    most ``fork_tries()`` tries a measure, the failed tries of the whole setting within ``budget_s``
    (``sweep.setting_limit`` allows for it). Any other failure fails the setting at once."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.failed: list[str] = []  # "measure: why", one per failed try

    def fill(self, measure: Measure, spec: Spec, ctx: Context, result: SettingResult) -> None:
        tries = fork_tries()
        for attempt in range(1, tries + 1):
            started = time.monotonic()
            try:
                measure.fill(spec, ctx, result)
                return
            except FeedbenchError as exc:
                self.budget_s -= time.monotonic() - started
                if not _failed_of_forks(exc) or attempt == tries or self.budget_s <= 0:
                    raise
                why = str(exc).splitlines()[0].split("; " + fork_hazard.CAUSE, 1)[0]  # the cause is said once
                self.failed.append(f"{measure.name}: {why}")

    def said(self) -> str:
        if not self.failed:
            return ""
        return f"; {len(self.failed)} run(s) here failed for it and were tried again (first: {self.failed[0]})"


def _failed_of_forks(exc: Exception) -> bool:
    """A worker hung or died after TensorFlow ran in forked workers (here, or in a fresh process)."""
    if isinstance(exc, ForkedTensorflowFailed):
        return True
    return isinstance(exc, ChildFailed) and exc.error_type == ForkedTensorflowFailed.__name__
