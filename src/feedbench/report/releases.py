"""What changed between Keras releases, as Markdown: one asv run of the suite per release.

asv's matrix over ``keras`` (``asv.keras.conf.json``) gives one environment, hence one column of
results, per release on one commit of feedbench; ``site.load`` names each column's release. This
page sets the releases side by side: the verdict of each setting, whole-epoch throughput, what a
real ``fit`` delivered, and every figure that moved past 10 % from one release to the next.
"""

from __future__ import annotations

import datetime
import math

from feedbench.report.site import Column, Run, changes, column_order, verdicts

THROUGHPUT = "throughput.Throughput.track_epoch_samples_per_s"
FIT_STREAM = ("fit_stream.FitStream.track_missing", "fit_stream.FitStream.track_duplicated")


def by_release(groups: dict[Column, list[Run]]) -> list[tuple[str, Run]]:
    """(release, its newest run) in version order, for the machine and backend with the most releases."""
    per_column = {column: runs[-1] for column, runs in groups.items() if ", Keras " in column.backend}
    if not per_column:
        raise FileNotFoundError(
            "no results of a matrix over Keras releases; expected asv.keras.conf.json's results "
            "(bash benchmarks/keras_history.sh)"
        )

    def place(column: Column) -> Column:  # the machine and the backend without its release
        return Column(column.machine, column.backend.partition(", ")[0])

    places = [place(column) for column in per_column]
    most = max(sorted(set(places)), key=places.count)
    chosen = sorted((column for column in per_column if place(column) == most), key=column_order)
    return [(column.backend.partition(", Keras ")[2], per_column[column]) for column in chosen]


def _when(run: Run) -> str:
    """When the run started (asv's ``date`` is the commit's)."""
    return datetime.datetime.fromtimestamp((run.started or run.date) / 1000, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )


def _number(value) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"


def _setting_label(params) -> str:
    """'keyed, 2 processes' of parameters that name them."""
    return f"{params.implementation}, {params.workers} {'processes' if params.use_multiprocessing else 'threads'}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(groups: dict[Column, list[Run]], command: str) -> str:
    releases = by_release(groups)
    first = releases[0][1]
    names = [f"Keras {release}" for release, _ in releases]
    lines = [
        "# Keras releases, side by side",
        "",
        f"Written by `{command}` from asv's results: machine `{first.machine}` ({first.cores} cores, {first.cpu}), "
        f"{first.backend.partition(', ')[0]} backend, feedbench commit {first.commit[:8]}; runs from "
        f"{min(_when(run) for _, run in releases)} to {max(_when(run) for _, run in releases)}. "
        "Each column is one asv environment with that Keras installed (TensorFlow pinned).",
        "",
        "## Verdicts of the stream's checks",
        "",
    ]
    cells = [verdicts(run) for _, run in releases]
    settings = sorted(set().union(*cells), key=str)
    rows = [[_setting_label(s)] + [c.get(s, ("na", "n/a"))[1] for c in cells] for s in settings]
    lines += _table(["setting", *names], rows) if rows else ["no determinism results"]
    lines += ["", "## Whole-epoch throughput (samples/s, median of the measured epochs)", ""]
    combos = sorted(set().union(*(run.figures.get(THROUGHPUT, {}) for _, run in releases)), key=str)
    rows = [
        [f"{_setting_label(p)} ({p.workload}, {p.size})"]
        + [_number(run.figures.get(THROUGHPUT, {}).get(p, math.nan)) for _, run in releases]
        for p in combos
        if hasattr(p, "size")
    ]
    lines += _table(["setting", *names], rows) if rows else ["no throughput results"]
    fit_rows = []
    for key in FIT_STREAM:
        combos = sorted(set().union(*(run.figures.get(key, {}) for _, run in releases)), key=str)
        for p in combos:
            if not hasattr(p, "use_multiprocessing"):
                continue
            label = f"{key.rsplit('_', 1)[-1]}: {_setting_label(p)}"
            fit_rows.append([label] + [_number(run.figures.get(key, {}).get(p, math.nan)) for _, run in releases])
    if fit_rows:
        lines += ["", "## What a real `fit` delivered (samples, its worst epoch; 0 is right)", ""]
        lines += _table(["figure, setting", *names], fit_rows)
    lines += ["", "## Changed from one release to the next (past 10 %, and asv's statistics agree)", ""]
    for (old_name, older), (new_name, newer) in zip(releases, releases[1:]):
        moved = changes(older, newer)
        lines.append(
            f"- **Keras {old_name} to {new_name}**: " + ("nothing moved" if not moved else f"{len(moved)} moved")
        )
        for m in moved:
            direction = "worse" if m.worse else "better"
            lines.append(f"  - {m.figure}{tuple(m.params)}: {_number(m.old)} to {_number(m.new)} ({direction})")
    return "\n".join(lines) + "\n"
