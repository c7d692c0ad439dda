"""``feedbench report``: one page that answers at a glance, read off asv's results directory.

Per machine and Keras backend (the ``KERAS_BACKEND`` of the asv environment), from its newest
commit, side by side when results of several machines are there:

- the verdict matrix: implementation x setting, green when every determinism check and leak verdict
  passed, red with the problems named, grey where the setting does not apply, dark red where it failed to run;
- throughput against workers, per workload and source size (matplotlib, one line per
  implementation and use_multiprocessing, workers as categories);
- memory against workers (peak USS of the process tree);
- starvation (training: 1 - fit samples/s / the one-prepared-batch ceiling, from the tracked ratio),
  "not starved, within noise" where it or its interval reaches 0;
- what moved by more than 10 % between the machine's last two commits, in the direction that is
  worse for the figure.

asv's own pages stay the place for history; this page is what a person opens first.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import itertools
import json
import math
import os
from collections import defaultdict, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from feedbench.fit.training import NOT_STARVED, starvation_verdict
from feedbench.measure.determinism import FROZEN_THRESHOLD

THRESHOLD = 0.10  # a change past this share is listed between the last two commits
# The frozen fraction of older results says frozen by its size alone (profile also asks significance)
FROZEN_BY_SHARE = "augmentation frozen across epochs (by share)"

# determinism.Stream figure -> (the problem it shows, is it failed?): one flag per check; the counts
# (and the frozen fraction) tracked before them are read in results of older commits.
CHECKS = {
    "problem_missing": ("missing samples", lambda v: v > 0),
    "problem_duplicated": ("duplicated samples", lambda v: v > 0),
    "problem_never_delivered": ("never delivered", lambda v: v > 0),
    "problem_in_order": ("out of index order", lambda v: v > 0),
    "problem_reproducible": ("not reproducible", lambda v: v > 0),
    "problem_matches_serial": ("differs from serial", lambda v: v > 0),
    "problem_repeated_draws": ("repeated draws", lambda v: v > 0),
    "problem_source_intact": ("writes into its source", lambda v: v > 0),
    "problem_epoch_diversity": ("augmentation frozen across epochs", lambda v: v > 0),
    "problem_aliased_batches": ("one buffer for every batch", lambda v: v > 0),
    "problem_mismatched_inputs": ("inputs under other samples' labels", lambda v: v > 0),
    "problem_uneven_coverage": ("uneven coverage over the run", lambda v: v > 0),
    "forked_tensorflow": ("TensorFlow in forked workers", lambda v: v > 0),
    "missing": ("missing samples", lambda v: v > 0),
    "duplicated": ("duplicated samples", lambda v: v > 0),
    "never_delivered": ("never delivered", lambda v: v > 0),
    "batches_differing_from_repeat": ("not reproducible", lambda v: v > 0),
    "batches_differing_from_serial": ("differs from serial", lambda v: v > 0),
    "repeated_draws": ("repeated draws", lambda v: v > 0),
    "source_rows_changed": ("writes into its source", lambda v: v > 0),
    "frozen_fraction": (FROZEN_BY_SHARE, lambda v: v >= FROZEN_THRESHOLD),
}
# Figures where higher is better; everything else is better lower (asv's convention). Lower-is-better
# markers are checked first: a spread or a starvation is never "better" for rising.
LOWER_IS_BETTER = (
    "starvation",
    "spread",
    "first_batch",
    "uss",
    "pss",
    "rss",
    "growth",
    "failures",
    "over_budget",
    "problem",
)
HIGHER_IS_BETTER = ("samples_per_s", "accuracy", "_vs_", "_over_", "diversity")


def higher_is_better(figure: str) -> bool:
    name = figure.rsplit(".", 1)[-1]
    if any(marker in name for marker in LOWER_IS_BETTER):
        return False
    return any(marker in name for marker in HIGHER_IS_BETTER)


class Column(NamedTuple):
    """Where runs were made: one machine and backend (with the Keras release of a matrix over it)."""

    machine: str
    backend: str


class Cell(NamedTuple):
    """Where a cell of the verdict matrix stands: an implementation and its worker setting."""

    implementation: str
    workers: int
    use_multiprocessing: bool


@dataclass
class Run:
    """One machine's results for one commit and backend: figure -> {params: value}, where params is
    a named tuple of the benchmark's parameters (``p.workers``), as its ``param_names`` call them."""

    machine: str
    backend: str
    commit: str
    date: int
    cpu: str
    cores: str
    figures: dict[str, dict[tuple, float | None]] = field(default_factory=dict)
    started: int | None = None  # its first benchmark's start (ms); ``date`` is the commit's
    # asv's statistics and samples of a figure that carries them (a time_ benchmark's repeats)
    stats: dict[str, dict[tuple, tuple[dict, list | None]]] = field(default_factory=dict)
    source: Any = field(default=None, repr=False, compare=False)  # the asv Results read (timings)

    @property
    def label(self) -> str:
        return f"{self.machine} ({self.cores} cores, {self.cpu}), {self.backend}"


def benchmarks_listed(results_dir: str) -> dict[str, dict]:
    """The ``benchmarks.json`` asv keeps beside the results: benchmark -> what asv knows of it."""
    try:
        with open(os.path.join(results_dir, "benchmarks.json")) as handle:
            listed = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {name: entry for name, entry in listed.items() if isinstance(entry, dict)}


# The parameters feedbench's suite gives each benchmark class, for results whose benchmarks.json
# does not name them (a folder copied without it); tests hold them to the suite's own.
SUITE_PARAM_NAMES = {
    "determinism.Stream": ("implementation", "workers", "use_multiprocessing"),
    "fit_stream.FitStream": ("implementation", "workers", "use_multiprocessing"),
    "throughput.EpochTime": ("implementation", "workers", "use_multiprocessing"),
    "throughput.Throughput": ("implementation", "workload", "workers", "use_multiprocessing", "size"),
    "memory.TreeMemory": ("implementation", "workers", "use_multiprocessing", "size"),
    "training.Training": ("implementation", "workers", "use_multiprocessing", "device"),
}


@functools.cache
def _params_type(names: tuple[str, ...]) -> type:
    return namedtuple("Params", names, rename=True)  # a name that is not an identifier becomes _0, _1, ...


def _names(listed: dict[str, tuple[str, ...]]) -> Callable[[str, int], tuple[str, ...]]:
    """figure, its parameter count -> their names: as benchmarks.json lists the figure, else another
    figure of its class, else as feedbench's suite names them; () where none has that count."""
    by_class: dict[tuple[str, int], tuple[str, ...]] = {
        (name, len(names)): names for name, names in SUITE_PARAM_NAMES.items()
    }
    for key, names in listed.items():
        by_class[(key.rsplit(".", 1)[0], len(names))] = names

    def names_of(key: str, count: int) -> tuple[str, ...]:
        names = listed.get(key) or by_class.get((key.rsplit(".", 1)[0], count), ())
        return names if len(names) == count else ()

    return names_of


def load(results_dir: str) -> dict[Column, list[Run]]:
    """Every run under ``results_dir``, grouped by machine and backend, oldest commit first."""
    from asv.results import iter_results

    if not os.path.isdir(results_dir):
        raise FileNotFoundError(
            f"asv results folder {results_dir!r} not found; expected the results_dir of asv.conf.json "
            "(run bash benchmarks/run.sh first)"
        )
    names_of = _names({key: tuple(e.get("param_names") or ()) for key, e in benchmarks_listed(results_dir).items()})
    groups: dict[Column, list[Run]] = defaultdict(list)
    for result in iter_results(results_dir):
        params = result.params
        run = Run(
            params.get("machine", "?"),
            backend_of(result),
            result.commit_hash,
            result.date or 0,
            params.get("cpu", "?"),
            str(params.get("num_cpu", "?")),
            started=min(filter(None, benchmark_starts(result).values()), default=None),
            source=result,
        )
        for key in result.get_all_result_keys():
            axes = result.get_result_params(key)
            values = result.get_result_value(key, axes)
            if not axes:  # asv stores an unparametrized figure as a list of one
                run.figures[key] = {(): values[0] if isinstance(values, list) and len(values) == 1 else values}
                continue
            combos = [tuple(_plain(v) for v in combo) for combo in itertools.product(*axes)]
            if named := names_of(key, len(axes)):  # else unnamed: a layout no benchmark of its class has
                combos = [_params_type(named)(*combo) for combo in combos]
            run.figures[key] = dict(zip(combos, values if isinstance(values, list) else [values]))
            stats, samples = result.get_result_stats(key, axes), result.get_result_samples(key, axes)
            if isinstance(stats, list) and any(stats):
                samples = samples if isinstance(samples, list) else [None] * len(stats)
                run.stats[key] = {c: (st, sa) for c, st, sa in zip(combos, stats, samples) if st}
        groups[Column(run.machine, run.backend)].append(run)
    if not groups:
        raise FileNotFoundError(f"no asv results in {results_dir!r}; expected <machine>/<commit>-<env>.json files")
    for runs in groups.values():
        runs.sort(key=lambda r: r.date)
    return dict(groups)


def benchmark_starts(result) -> dict[str, float]:
    """benchmark -> when asv started it (ms); asv's own entries (``<build>``, setup caches) left out."""
    return {key: value for key, value in result.started_at.items() if not key.startswith("<")}


def backend_of(result) -> str:
    """The column an asv result belongs in: its Keras backend, and its Keras release where asv's
    matrix is over ``keras`` (asv.keras.conf.json)."""
    backend = (result.env_vars or {}).get("KERAS_BACKEND", "tensorflow")
    keras = result.params.get("keras")
    return f"{backend}, Keras {keras}" if keras else backend


def _plain(value_repr: str):
    """asv stores parameter values as their repr: "'keyed'" -> 'keyed', "2" -> 2, "True" -> True."""
    text = str(value_repr)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        return text


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- the verdict matrix


# memory.TreeMemory figure -> the leak it shows (1: the soak found it); per (impl, workers, mp, size),
# shown in the matrix's (impl, workers, mp) cell when any source size leaked.
LEAKS = {
    "problem_leaked_memory": "leaks memory",
    "problem_leaked_threads": "leaks threads",
    "problem_leaked_files": "leaks open files",
    "problem_leaked_processes": "leaves processes running",
}


def _param(params, name: str):
    """A parameter by name; None where the figure's parameters are not named (older results)."""
    return getattr(params, name, None)


def _cell_of(params) -> Cell | None:
    """The matrix cell a figure's parameters fall in; None where they do not name one."""
    if not all(hasattr(params, name) for name in Cell._fields):
        return None
    return Cell(params.implementation, params.workers, params.use_multiprocessing)


def _leaks(run: Run) -> dict[Cell, tuple[list[str], bool, bool]]:
    """setting -> (the leaks found, whether a leak verdict failed to run, was judged)."""
    found: dict[Cell, tuple[list[str], bool, bool]] = {}
    for name, words in LEAKS.items():
        for params, value in run.figures.get(f"memory.TreeMemory.track_{name}", {}).items():
            if (setting := _cell_of(params)) is None:
                continue
            leaks, failed, judged = found.get(setting, ([], False, False))
            if value is None:
                failed = True
            elif _known(value):
                judged = True
                if value > 0 and words not in leaks:
                    leaks = [*leaks, words]
            found[setting] = (leaks, failed, judged)
    return found


def verdicts(run: Run) -> dict[Cell, tuple[str, str]]:
    """setting -> (state, words): state is ok, problem, failed or na."""
    cells: dict[Cell, tuple[str, str]] = {}
    settings = set()
    for name in [*CHECKS, "problems"]:
        settings |= set(map(_cell_of, run.figures.get(f"determinism.Stream.track_{name}", {})))
    settings.discard(None)
    leaks = _leaks(run)
    for setting in sorted(settings | set(leaks), key=str):
        problems, failed, measured = [], False, False
        for name, (words, bad) in CHECKS.items():
            values = run.figures.get(f"determinism.Stream.track_{name}", {})
            if setting not in values:
                continue
            value = values[setting]
            if value is None:  # asv: the benchmark raised (the setting failed to run)
                failed = True
            elif _known(value):
                measured = True
                if bad(value):
                    problems.append(words)
        problems = list(dict.fromkeys(problems))
        # The count of failed checks as profile makes it (with the significance tests and the checks
        # asv has no figure for) decides the colour; the figures above name what they can.
        counted = run.figures.get("determinism.Stream.track_problems", {}).get(setting, "absent")
        if counted is None:
            failed = True
        elif counted != "absent" and _known(counted):
            measured = True
            problems = [p for p in problems if p != FROZEN_BY_SHARE]
            if counted > len(problems):
                problems.append(f"{int(counted) - len(problems)} more (feedbench profile names them)")
            elif counted == 0:
                problems = []
        leaked, leak_failed, judged = leaks.get(setting, ([], False, False))
        problems += leaked
        measured = measured or judged
        note = "; the memory run for the leak verdicts failed" if leak_failed else ""  # the stream's verdicts stand
        if failed:
            cells[setting] = ("failed", "failed to run")
        elif problems:
            cells[setting] = ("problem", ", ".join(problems) + note)
        elif measured:
            cells[setting] = ("ok", "no problem found" + note)
        else:
            cells[setting] = ("failed", "failed to run") if leak_failed else ("na", "n/a")
    return cells


def _matrix_html(run: Run) -> str:
    cells = verdicts(run)
    if not cells:
        return "<p>no determinism results in this run</p>"
    impls = sorted({s.implementation for s in cells}, key=str)
    settings = sorted({(s.workers, s.use_multiprocessing) for s in cells}, key=lambda s: (s[1], s[0]))
    head = "".join(f"<th>{w} {'proc' if mp else 'thr'}</th>" for w, mp in settings)
    rows = []
    for impl in impls:
        tds = []
        for w, mp in settings:
            state, words = cells.get(Cell(impl, w, mp), ("na", "n/a"))
            tds.append(f'<td class="{state}" title="{html.escape(words)}">{html.escape(words)}</td>')
        rows.append(f"<tr><th>{html.escape(str(impl))}</th>{''.join(tds)}</tr>")
    return f'<table class="matrix"><tr><th>implementation</th>{head}</tr>{"".join(rows)}</table>'


# --------------------------------------------------------------------------- plots


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _against_workers(run: Run, key: str, fixed: dict[str, object], scale: float, ylabel: str, title: str) -> str | None:
    """A plot of one figure against workers (categories), a line per implementation and mode;
    ``fixed`` pins other parameters by name (workload, size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = run.figures.get(key, {})
    lines: dict[tuple, dict[int, float]] = defaultdict(dict)
    for params, value in values.items():
        if not _known(value) or _cell_of(params) is None or any(_param(params, n) != v for n, v in fixed.items()):
            continue
        lines[(params.implementation, params.use_multiprocessing)][params.workers] = value / scale
    if not lines:
        return None
    workers = sorted({w for line in lines.values() for w in line})
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    positions = {w: i for i, w in enumerate(workers)}
    cmap = plt.get_cmap("tab20")
    for i, ((impl, mp), points) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        xs = [positions[w] for w in sorted(points)]
        ys = [points[w] for w in sorted(points)]
        ax.plot(
            xs,
            ys,
            marker="o",
            linestyle="-" if mp else "--",
            color=cmap(i % 20),
            label=f"{impl} {'proc' if mp else 'thr'}",
        )
    ax.set_xticks(range(len(workers)), [str(w) for w in workers])
    ax.set_xlabel("workers")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def _tracked(run: Run, *keys: str) -> str:
    """The first of ``keys`` (a figure, then what older results stored instead) that ``run`` has."""
    return next((key for key in keys if key in run.figures), keys[0])


def _throughput_plots(run: Run) -> list[tuple[str, str]]:
    key = _tracked(run, "throughput.Throughput.track_epoch_samples_per_s", "throughput.Throughput.track_samples_per_s")
    combos = {(_param(p, "workload"), _param(p, "size")) for p in run.figures.get(key, {})}
    plots = []
    for workload, size in sorted(combos, key=str):
        title = f"throughput, {workload} workload, {size} source"
        png = _against_workers(run, key, {"workload": workload, "size": size}, 1.0, "samples/s", title)
        if png:
            plots.append((title, png))
    return plots


def _memory_plots(run: Run) -> list[tuple[str, str]]:
    key = _tracked(run, "memory.TreeMemory.track_added_tree_pss", "memory.TreeMemory.track_peak_tree_uss")
    what = "PSS the run adds to the process tree" if key.endswith("added_tree_pss") else "peak USS of the process tree"
    sizes = {_param(p, "size") for p in run.figures.get(key, {})}
    plots = []
    for size in sorted(sizes, key=str):
        title = f"{what}, {size} source"
        png = _against_workers(run, key, {"size": size}, 1 << 20, "MiB", title)
        if png:
            plots.append((title, png))
    return plots


def _starvation_html(run: Run) -> str:
    """Starvation per setting, within its physical range: 'not starved, within noise' where it is at
    or below 0, or its interval (asv's 99 % one, of the seeds' ratios) reaches 0."""
    # 1 - fit over the ceiling; results stored before that ratio was tracked carry starvation itself
    key = "training.Training.track_fit_over_ceiling"
    values = {p: 1.0 - v for p, v in run.figures.get(key, {}).items() if _known(v)}
    stats = run.stats.get(key, {}) if values else {}
    values = values or run.figures.get("training.Training.track_starvation", {})
    rows = [
        f"<tr><td>{html.escape(str(p.implementation))}</td>"
        f"<td>{p.workers} {'proc' if p.use_multiprocessing else 'thr'}</td>"
        f"<td>{html.escape(str(p.device))}</td><td>{_starvation_cell(v, stats.get(p))}</td></tr>"
        for p, v in sorted(values.items(), key=lambda kv: str(kv[0]))
        if _known(v) and hasattr(p, "device")
    ]
    if not rows:
        return "<p>no training results in this run</p>"
    return (
        '<table class="plain"><tr><th>implementation</th><th>setting</th><th>device</th><th>starvation</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _starvation_cell(starvation: float, stats: tuple[dict, list | None] | None) -> str:
    interval = None
    if stats and _known(stats[0].get("ci_99_a")) and _known(stats[0].get("ci_99_b")):
        interval = (1.0 - stats[0]["ci_99_b"], 1.0 - stats[0]["ci_99_a"])  # of the ratio, turned over
    if starvation_verdict(starvation, interval[0] if interval else None) == NOT_STARVED:
        return NOT_STARVED
    return f"{starvation:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


# --------------------------------------------------------------------------- regressions


class Change(NamedTuple):
    """A figure that moved between two runs."""

    figure: str
    params: tuple
    old: float
    new: float
    worse: bool  # in the figure's own direction (``higher_is_better``)


def changes(older: Run, newer: Run, threshold: float = THRESHOLD) -> list[Change]:
    """Every figure that moved by more than ``threshold`` (and, for a figure with asv's statistics in
    both runs, that they say differs), the worse first."""
    moved = []
    for key, values in newer.figures.items():
        before = older.figures.get(key, {})
        for params, new in values.items():
            old = before.get(params)
            if not (_known(old) and _known(new)) or old == new:
                continue
            # from 0 (a check that passed and now fails) the change is infinite, never skipped
            change = (new - old) / abs(old) if old else math.copysign(math.inf, new)
            if abs(change) <= threshold or not _differ(older, newer, key, params):
                continue
            higher_better = higher_is_better(key)
            moved.append(Change(key, params, old, new, (change < 0) == higher_better))
    return sorted(moved, key=lambda m: (not m.worse, m.figure, str(m.params)))


@dataclass
class Agreement:
    """How well two runs agree: every figure with a value in both, and those beyond the factor."""

    older: Run
    newer: Run
    factor: float
    compared: dict[str, int] = field(default_factory=dict)  # benchmark class -> figures with a value in both
    moved: list[tuple[str, tuple, float, float]] = field(default_factory=list)
    failed_once: list[tuple[str, tuple]] = field(default_factory=list)  # a value in one run, failed in the other

    @property
    def within(self) -> int:
        return sum(self.compared.values()) - len(self.moved)


def agreement(older: Run, newer: Run, factor: float = 1.1) -> Agreement:
    """Compare two runs figure by figure, as ``asv compare --factor`` does: moved when the larger
    value exceeds the smaller times ``factor`` (0 against anything else moved), unless the figure
    carries asv's statistics in both runs and they say the two do not differ. n/a in either run is
    not a figure; failed in both is not either."""
    if not factor > 1:
        raise ValueError(f"factor {factor!r} given; expected a number above 1 (1.1: a 10 % change)")
    found = Agreement(older, newer, factor)
    for key, values in newer.figures.items():
        before = older.figures.get(key, {})
        group = key.rsplit(".", 1)[0]
        for params, new in values.items():
            old = before.get(params, float("nan"))
            if _skipped(old) or _skipped(new):
                continue
            if (old is None) != (new is None):
                found.failed_once.append((key, params))
                continue
            if old is None:
                continue
            found.compared[group] = found.compared.get(group, 0) + 1
            if _ratio(old, new) > factor if old * new > 0 else old != new:
                if _differ(older, newer, key, params):
                    found.moved.append((key, params, old, new))
    return found


def agreement_lines(found: Agreement, listed: int = 20) -> list[str]:
    """The agreement in words: the total, per benchmark class, and the figures that moved most."""
    older, newer = found.older, found.newer
    total = sum(found.compared.values()) + len(found.failed_once)
    share = found.within / total if total else 1.0
    lines = [
        f"{newer.label}: {older.commit[:8]} -> {newer.commit[:8]}: {found.within} of {total} figures "
        f"({share:.1%}) within {found.factor:g}x; {len(found.moved)} moved, "
        f"{len(found.failed_once)} failed in one run only"
    ]
    moved_by_group: dict[str, int] = defaultdict(int)
    for key, *_ in found.moved:
        moved_by_group[key.rsplit(".", 1)[0]] += 1
    for group, compared in sorted(found.compared.items()):
        lines.append(f"  {group}: {compared - moved_by_group[group]} of {compared} within")
    ranked = sorted(found.moved, key=lambda m: -_ratio(m[2], m[3]))
    for key, params, old, new in ranked[:listed]:
        lines.append(f"  moved: {key}{tuple(params)} {old:.4g} -> {new:.4g}")
    for key, params in found.failed_once[:listed]:
        lines.append(f"  failed in one run: {key}{tuple(params)}")
    return lines


def _differ(older: Run, newer: Run, key: str, params: tuple) -> bool:
    """Whether asv's statistics of a figure in two runs say it differs (asv compare's rule: True
    when either run has none, or only one repeat)."""
    old, new = older.stats.get(key, {}).get(params), newer.stats.get(key, {}).get(params)
    if not (old and new) or 1 in (old[0].get("repeat", 0), new[0].get("repeat", 0)):
        return True
    from asv import _stats  # what asv compare itself calls

    return _stats.is_different(old[1], new[1], old[0], new[0])


def _change_text(old: float, new: float) -> str:
    return f"{(new - old) / abs(old):+.0%}" if old else "from 0"


def _ratio(old: float, new: float) -> float:
    low, high = sorted((abs(old), abs(new)))
    return high / low if low else math.inf


def _skipped(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _changes_html(runs: list[Run]) -> str:
    if len(runs) < 2:
        return "<p>one commit measured on this machine: nothing to compare yet</p>"
    older, newer = runs[-2], runs[-1]
    moved = changes(older, newer)
    head = (
        f"<p>{older.commit[:8]} &rarr; {newer.commit[:8]}: {len(moved)} figures moved by more than {THRESHOLD:.0%}</p>"
    )
    if not moved:
        return head
    rows = [
        f'<tr class="{"worse" if m.worse else "better"}"><td>{html.escape(m.figure)}</td>'
        f"<td>{html.escape(str(tuple(m.params)))}</td><td>{m.old:.4g}</td><td>{m.new:.4g}</td>"
        f"<td>{_change_text(m.old, m.new)}</td><td>{'worse' if m.worse else 'better'}</td></tr>"
        for m in moved
    ]
    return head + (
        '<table class="plain changes"><tr><th>figure</th><th>parameters</th><th>before</th><th>after</th>'
        "<th>change</th><th></th></tr>" + "".join(rows) + "</table>"
    )


# --------------------------------------------------------------------------- the page

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.columns { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
.column { flex: 1 1 30em; min-width: 30em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
td.ok { background: #2e9d4a; color: white; }
td.problem { background: #d93025; color: white; }
td.failed { background: #7a0f0f; color: white; }
td.na { background: #e0e0e0; color: #555; }
tr.worse td { background: #fbe3e1; }
tr.better td { background: #e3f4e6; }
img { max-width: 100%; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
"""


def column_order(key: Column) -> tuple:
    """Machines, then backends, then Keras releases by their version (3.9 before 3.12)."""
    machine, backend = key
    name, _, keras = backend.partition(", Keras ")
    return (machine, name, tuple(int(part) if part.isdigit() else 0 for part in keras.split(".")) if keras else ())


def render(groups: dict[Column, list[Run]], asv_site: str | None = None) -> str:
    columns = sorted(groups.items(), key=lambda kv: column_order(kv[0]))

    def section(title: str, body) -> str:
        cells = "".join(
            f'<div class="column" data-machine="{html.escape(machine)}" data-backend="{html.escape(backend)}">'
            f"<h3>{html.escape(runs[-1].label)}, commit {html.escape(runs[-1].commit[:8])}</h3>{body(runs)}</div>"
            for (machine, backend), runs in columns
        )
        return f'<h2>{title}</h2><div class="columns">{cells}</div>'

    def plots(make):
        def body(runs):
            made = make(runs[-1])
            if not made:
                return "<p>no results of this kind in this run</p>"
            return "".join(
                f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{png}"></figure>' for t, png in made
            )

        return body

    link = f'<p><a href="{html.escape(asv_site)}">asv\'s pages: every figure over commits</a></p>' if asv_site else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>feedbench report</title><style>{STYLE}</style>"
        f"</head><body><h1>feedbench report</h1>{link}"
        "<p>Green: every determinism check passed. Red: the problems found. Grey: the setting does not apply. "
        "Dark red: the setting failed to run. Starvation is 1 - fit samples/s / the same model fed one "
        "prepared batch (0: never waiting for data).</p>"
        + section(
            "Is my stream right, and does it leak? (verdicts: the stream's checks and the soak's leaks)",
            lambda runs: _matrix_html(runs[-1]),
        )
        + section("Which setting is fast? (throughput against workers)", plots(_throughput_plots))
        + section("What does it cost? (memory against workers)", plots(_memory_plots))
        + section("Does it starve fit? (starvation)", lambda runs: _starvation_html(runs[-1]))
        + section("What changed since the previous commit?", _changes_html)
        + "</body></html>"
    )


LINK_MARK = "<!-- feedbench report link -->"


def link_from_asv_site(html_dir: str, report_href: str = "report/index.html") -> bool:
    """Put a link to the report at the top of asv's index page (once); False when there is no site."""
    index = os.path.join(html_dir, "index.html")
    if not os.path.isfile(index):
        return False
    with open(index) as handle:
        page = handle.read()
    if LINK_MARK in page:
        return True
    banner = (
        f'{LINK_MARK}<div style="padding:6px 12px;background:#fff8d6;border-bottom:1px solid #e5d9a0">'
        f'<a href="{html.escape(report_href)}"><b>feedbench report</b></a>: verdicts, throughput and memory '
        "against workers, starvation and the latest changes, per machine</div>"
    )
    page = page.replace("<body>", "<body>" + banner, 1) if "<body>" in page else banner + page
    with open(index, "w") as handle:
        handle.write(page)
    return True


def write(results_dir: str, out_dir: str, asv_site: str | None = None) -> str:
    """Build the page from ``results_dir`` into ``out_dir/index.html``; return its path."""
    page = render(load(results_dir), asv_site)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "index.html")
    with open(path, "w") as handle:
        handle.write(page)
    return path


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    import shutil

    return next((found for name in CHROMIUM if (found := shutil.which(name))), None)


def chromium_command(browser: str, profile_dir) -> list[str]:
    """Headless, offline, with a throwaway profile: how feedbench and its tests open a page."""
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
    ]


def screenshot(page: str, png: str, size: tuple[int, int] = (1400, 1000), timeout_s: float = 120.0) -> str:
    """A picture of the written page (``png``), taken by headless Chromium; the page is self-contained
    (its plots are inline), so nothing is fetched."""
    import subprocess
    import tempfile

    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(CHROMIUM)}); expected one for --screenshot")
    with tempfile.TemporaryDirectory(prefix="feedbench-chromium-") as profile:
        subprocess.run(
            [
                *chromium_command(browser, profile),
                f"--window-size={size[0]},{size[1]}",
                f"--screenshot={os.path.abspath(png)}",
                "file://" + os.path.abspath(page),
            ],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    if not os.path.exists(png):
        raise RuntimeError(f"Chromium wrote no picture to {png!r}")
    return png
