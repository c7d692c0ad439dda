"""``feedbench profile``: the three measurements over a grid of settings.

The settings are measured by :mod:`feedbench.run.sweep`, in a child process under a time
limit per setting: a generator that raises, hangs or changes shape fails that setting with a
one-line reason, and the other settings go on.
"""

from __future__ import annotations

import time
from dataclasses import replace

from feedbench.core.spec import Spec
from feedbench.measure.setting import PROFILE_MEASURES, SettingResult
from feedbench.run import sweep


def settings_grid(workers=(1, 2, 4), multiprocessing=(False, True)) -> list[tuple[int, bool]]:
    return [(w, mp) for mp in multiprocessing for w in workers]


def profile(
    base: Spec,
    grid: list[tuple[int, bool]],
    epochs: int = 3,
    timeout_s: float = 120.0,
    plugins=(),
    progress=None,
    soak: int | None = None,
) -> list[SettingResult]:
    """One result per setting, measured in a child process that a failing setting cannot take down.
    ``soak``: the memory measure runs that many epochs, for leak verdicts (None: ``epochs``)."""
    specs = [replace(base, workers=w, use_multiprocessing=mp) for w, mp in grid]
    started = time.monotonic()

    def report(index: int, result: SettingResult) -> None:
        if progress:
            state = "skipped" if result.skipped else ("FAILED: " + result.error if result.error else "done")
            progress(
                f"[{index + 1}/{len(specs)}] workers={specs[index].workers} "
                f"use_multiprocessing={specs[index].use_multiprocessing} {state} "
                f"({time.monotonic() - started:.1f} s)"
            )

    if progress:
        progress(
            f"measuring {len(specs)} settings, each under a limit of "
            f"{sweep.setting_limit(PROFILE_MEASURES, timeout_s, epochs=epochs, soak=soak):g} s ..."
        )
    return sweep.sweep(specs, PROFILE_MEASURES, epochs, timeout_s, plugins, report, soak=soak)
