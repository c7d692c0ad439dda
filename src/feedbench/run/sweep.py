"""Measure many settings in child processes that a failure cannot take down.

One child (``core.child``) measures the settings in turn (TensorFlow is imported once; when
memory is measured, one child per setting, so no setting's figures depend on the ones before) and
hands back a typed ``SettingResult`` per finished setting. A setting that runs past its limit,
or a child that dies (a data path stuck in native code ends its process), fails that one
setting with a one-line reason; the child's whole process group is killed and a fresh child
takes the rest, so a stuck setting never shares a process with the next one.

``repeats`` measures the whole list that many times, round after round (so a slow spell on the
machine touches one round of every setting, not every round of a few), and gives each setting's
median: the figures a regression tracker can compare from run to run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from feedbench.core.child import START_UP_S, ChildFailed, run_child, serve
from feedbench.core.spec import Spec
from feedbench.measure.setting import (
    FORK_RETRY_BUDGET,
    PROFILE_MEASURES,
    Context,
    SettingResult,
    check_measures,
    measure_setting,
    median_of,
    runs_per_setting,
    soak_share,
)


def setting_limit(measures, timeout_s: float, seeds: int = 1, epochs: int = 1, soak: int | None = None) -> float:
    """The most one setting may take: every run at its own limit (a soak's memory run at a longer
    one, ``soak_share``), the runs tried again after TensorFlow in forked workers hung
    (``FORK_RETRY_BUDGET``), plus start-up."""
    runs = runs_per_setting(measures, seeds)
    if "memory" in measures:
        runs += soak_share(epochs, soak) - 1.0
    return timeout_s * (runs + FORK_RETRY_BUDGET) + START_UP_S


def sweep(
    specs: list[Spec],
    measures=PROFILE_MEASURES,
    epochs: int = 3,
    timeout_s: float = 120.0,
    plugins=(),
    progress: Callable[[int, SettingResult], None] | None = None,
    seeds: int = 1,
    env: dict[str, str] | None = None,
    fresh_each: bool | None = None,
    model: str | None = None,
    repeats: int = 1,
    soak: int | None = None,
) -> list[SettingResult]:
    """One result per spec, in order; ``progress(index, result)`` as each finishes.

    ``seeds``: how many seeds the training measure repeats over. ``env``: set in the measuring
    process before anything loads (``CUDA_VISIBLE_DEVICES``). ``fresh_each``: every setting in a
    process of its own (by default when memory is measured). ``model``: the training measure's
    model as ``module:callable`` (the built-in one when None). ``repeats``: rounds over the whole
    list; each result is ``median_of`` its rounds (``progress`` is told once the last is in).
    ``soak``: the memory measure's epochs, for leak verdicts (None: ``epochs``).
    """
    check_measures(measures)
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} given; expected a whole number of at least 1")
    if repeats > 1:
        rounds: list[list[SettingResult]] = [[] for _ in specs]

        def one_round_finished(index: int, result: SettingResult) -> None:
            setting = index % len(specs)  # round r measures spec i at index r * len(specs) + i
            rounds[setting].append(result)
            if progress and len(rounds[setting]) == repeats:
                progress(setting, median_of(rounds[setting]))

        sweep(
            specs * repeats,
            measures,
            epochs,
            timeout_s,
            plugins,
            one_round_finished,
            seeds,
            env,
            fresh_each,
            model,
            soak=soak,
        )
        return [median_of(found) for found in rounds]
    results: list[SettingResult | None] = [None] * len(specs)
    limit = setting_limit(measures, timeout_s, seeds, epochs, soak)
    request = {
        "measures": list(measures),
        "epochs": epochs,
        "timeout_s": timeout_s,
        "plugins": list(plugins),
        "seeds": seeds,
        "model": model,
        "soak": soak,
    }

    def finished(index: int, result: SettingResult) -> None:
        results[index] = result
        if progress:
            progress(index, result)

    # Memory is read off the whole process: measured after other settings in one process it
    # climbs with their order, so each setting then gets a process of its own.
    fresh = "memory" in measures if fresh_each is None else fresh_each
    remaining = list(range(len(specs)))
    while remaining:
        failure = None
        batch = remaining[:1] if fresh else remaining
        try:
            run_child(
                "feedbench.run.sweep",
                {**request, "indices": batch, "specs": [specs[i].to_dict() for i in batch]},
                limit,
                env,
                lambda item: finished(item["index"], SettingResult.from_json(item["result"])),
            )
        except ChildFailed as exc:
            failure = str(exc)
        unfinished = [i for i in batch if results[i] is None]
        if unfinished:  # the setting the child was on when it stopped
            index = unfinished[0]
            finished(index, SettingResult.of(specs[index], error=failure or "measuring process ended early"))
        remaining = [i for i in remaining if results[i] is None]
    return results  # type: ignore[return-value]


def _measure(request: dict):
    ctx = Context(
        request["epochs"],
        request["timeout_s"],
        tuple(request["plugins"]),
        request["seeds"],
        request.get("model"),
        request.get("soak"),
    )
    for index, spec in zip(request["indices"], request["specs"]):
        yield {"index": index, "result": measure_setting(Spec(**spec), request["measures"], ctx).to_json()}


if __name__ == "__main__":
    sys.exit(serve(_measure))
