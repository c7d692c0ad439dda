"""``feedbench fit``'s report: per setting, how fast fit trains, how starved it is, and what the
generator costs in accuracy against the same model on in-memory arrays."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from feedbench.core.spec import Spec
from feedbench.fit.training import NOT_STARVED, starvation_verdict
from feedbench.measure.setting import SettingResult
from feedbench.report.table import setting_name


def render(spec: Spec, results: list[SettingResult], model: str | None, device: str) -> str:
    title = (
        f"feedbench fit: {spec.impl} on {device}, model {model or 'built-in (sized to the images)'}, "
        f"{spec.n_samples} samples ({spec.size}), batch {spec.batch_size}, {spec.workload} workload"
        + (f" ({spec.python_iters} iterations per sample)" if spec.workload == "python" else "")
        + ("" if spec.fit_shuffle is None else f", fit(shuffle={spec.fit_shuffle})")
    )
    table = Table(title=title, title_justify="left")
    for name in (
        "setting",
        "fit samples/s",
        "ceiling samples/s",
        "starvation",
        "val accuracy",
        "vs arrays",
        "noise (2 SE)",
        "accuracy verdict",
    ):
        table.add_column(name, justify="left" if name in ("setting", "accuracy verdict") else "right")
    notes = []
    for result in results:
        t = result.training
        if result.skipped or result.error or t is None:
            notes.append(f"{setting_name(result)}: {'skipped, ' + result.skipped if result.skipped else result.error}")
            continue
        ceiling = "-" if t.ceiling_samples_per_s is None else f"{t.ceiling_samples_per_s:,.0f}"
        table.add_row(
            setting_name(result),
            f"{t.fit_samples_per_s:,.0f}",
            ceiling,
            starvation_cell(t),
            f"{t.val_accuracy:.3f}",
            f"{t.accuracy_vs_baseline:+.3f}",
            f"{t.accuracy_noise:.3f}",
            t.accuracy_verdict,
        )
    console = Console(width=160, record=True, file=io.StringIO())  # rendered to text below
    console.print(table)
    text = console.export_text()
    lines = [text.rstrip(), ""]
    lines += notes
    lines += [
        "starvation = 1 - fit samples/s / the ceiling (the same model fed one prepared batch over and over, "
        "timed beside each seed): the share of the step time spent waiting for data; the median over seeds "
        f"[two standard errors], or '{NOT_STARVED}' where it or that interval reaches 0.",
        "vs arrays = accuracy minus that of the same model, same initial weights, fit on the data as in-memory "
        "arrays (paired per seed); beyond the noise it is the generator's doing.",
    ]
    return "\n".join(lines)


def starvation_cell(t) -> str:
    """Starvation with its interval over seeds; NOT_STARVED where it or its interval reaches 0."""
    if starvation_verdict(t.starvation, t.starvation_low) == NOT_STARVED:
        return NOT_STARVED
    if t.starvation_low is None:
        return f"{t.starvation:.2f}"
    return f"{t.starvation:.2f} [{t.starvation_low:.2f}, {t.starvation_high:.2f}]"
