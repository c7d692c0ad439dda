"""How long the suite takes and how well two runs agree, as Markdown (``feedbench report --budgets``).

Read off asv's results folder: per machine and backend, the newest run's time (from the first
benchmark's start to the last one's end, and asv's own timings of each module's ``setup_cache``,
where the measuring happens), what ran, was n/a or failed, and its agreement with the run before
it on the same machine. The page holds the latest figures; the history is in git and asv's site.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from dataclasses import dataclass, field

from feedbench.report import site

BUILD = "<build>"


@dataclass(frozen=True, slots=True)
class Timing:
    """One asv run's time.

    Attributes:
        started: the run's start (UTC): its first benchmark's, less the setup_cache before it.
        span_s: from then to the last benchmark's end, seconds (the environment's build not included).
        setup_s: asv's timing of each benchmark module's ``setup_cache`` (module -> seconds).
        build_s: building and installing the commit into asv's environment, or None.
    """

    started: datetime.datetime
    span_s: float
    setup_s: dict[str, float] = field(default_factory=dict)
    build_s: float | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """The newest run of one machine and backend.

    Attributes:
        run: its figures (``site.Run``).
        timing: how long it took.
        counts: figures that have a value, are n/a (skipped) or failed.
        agreement: against the machine's run before it, or None where there is one run.
    """

    run: site.Run
    timing: Timing | None
    counts: Counter
    agreement: site.Agreement | None


def setup_keys(results_dir: str) -> dict[str, str]:
    """benchmark -> the asv setup_cache ("module:line") it reads (``site.benchmarks_listed``)."""
    listed = site.benchmarks_listed(results_dir)
    return {name: entry["setup_cache_key"] for name, entry in listed.items() if entry.get("setup_cache_key")}


def timing(result, keys: dict[str, str] | None = None) -> Timing | None:
    """The time of one asv ``Results``; None where it holds no benchmark timings. asv times each
    setup_cache apart from the benchmarks and runs it just before the first benchmark that reads it,
    so the run took the benchmarks' span plus the setup_cache of the first one; ``keys``
    (``setup_keys``) says which that is, and names each setup_cache by the classes that read it."""
    keys = keys or {}
    started = site.benchmark_starts(result) if result is not None else {}
    if not started:
        return None
    durations = result.duration
    first_name = min(started, key=started.get)
    last = max(value + 1000 * (durations.get(key) or 0.0) for key, value in started.items())
    owners: dict[str, set[str]] = {}
    for name, cache in keys.items():
        owners.setdefault(cache, set()).add(name.rsplit(".", 1)[0])
    setup = {}
    for key, value in durations.items():
        if key.startswith("<setup_cache "):
            cache = key.removeprefix("<setup_cache ").removesuffix(">")
            setup[", ".join(sorted(owners.get(cache, {cache})))] = value
    before_first = durations.get(f"<setup_cache {keys[first_name]}>", 0.0) if first_name in keys else 0.0
    first = min(started.values()) - 1000 * before_first
    return Timing(
        datetime.datetime.fromtimestamp(first / 1000, datetime.timezone.utc),
        (last - first) / 1000,
        dict(sorted(setup.items(), key=lambda item: -item[1])),
        durations.get(BUILD),
    )


def counts(run: site.Run) -> Counter:
    found: Counter = Counter()
    for values in run.figures.values():
        for value in values.values():
            if value is None:
                found["failed"] += 1
            elif site._skipped(value):
                found["n/a"] += 1
            else:
                found["measured"] += 1
    return found


def budgets(results_dir: str, factor: float = 1.1) -> list[Budget]:
    """The newest run of every machine and backend under ``results_dir``."""
    groups = site.load(results_dir)
    keys = setup_keys(results_dir)
    found = []
    for key in sorted(groups, key=site.column_order):
        runs = groups[key]
        newest = runs[-1]
        agreed = site.agreement(runs[-2], newest, factor) if len(runs) > 1 else None
        found.append(Budget(newest, timing(newest.source, keys), counts(newest), agreed))
    return found


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)  # rounded first: 3659.6 s is 61 min 0 s, not 60 min 60 s
    return f"{minutes} min {rest} s"


def page(results_dir: str, factor: float = 1.1) -> str:
    """The Markdown page."""
    lines = [
        "# Budgets and repeat agreement",
        "",
        f"<!-- Written by `feedbench report {os.path.normpath(results_dir)} --budgets FILE` from asv's results. -->",
        "",
        "How long the newest asv run of each machine took, what it measured, and how well it agrees with",
        f"the run before it on the same machine (a figure agrees within a factor of {factor:g}, or within",
        "asv's statistics where it carries them). Rewritten by `feedbench report RESULTS_DIR --budgets",
        "docs/budgets.md` after a run; older figures are in git.",
    ]
    for budget in budgets(results_dir, factor):
        run, timed = budget.run, budget.timing
        lines += ["", f"## {run.label}", ""]
        lines.append(
            f"- commit `{run.commit[:8]}`" + (f", started {timed.started:%Y-%m-%d %H:%M} UTC" if timed else "")
        )
        if timed:
            lines.append(f"- the run, measuring included: **{_minutes(timed.span_s)}**")
            if timed.build_s is not None:
                lines.append(f"- building and installing the commit: {_minutes(timed.build_s)}")
            if timed.setup_s:
                setups = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timed.setup_s.items())
                lines.append(f"- measuring (asv's `setup_cache`, per module): {setups}")
        got = budget.counts
        lines.append(
            f"- figures: {got['measured']} measured, {got['n/a']} n/a (settings that do not apply), "
            f"{got['failed']} failed"
        )
        if budget.agreement is None:
            lines.append("- agreement: one run of this machine, nothing to compare with")
        else:
            summary, *per_class = site.agreement_lines(budget.agreement, listed=10)
            lines.append(f"- agreement with the run before: {summary.split(': ', 1)[1]}")
            lines += [f"  - {line.strip()}" for line in per_class]
    return "\n".join(lines) + "\n"
