"""The Python API: ``feedbench.profile(your_dataset_or_factory)``, in a notebook or a script.

    import feedbench
    result = feedbench.profile("mypkg.feeds:make_dataset", workers=(1, 2, 4))
    result                      # a table in Jupyter (and in a terminal via rich)
    result.problems             # {problem: [settings]}
    result.plot()               # throughput and memory against workers
    result.to_json()

What it takes:

- a factory taking keyword settings, ``factory(workers=..., use_multiprocessing=...,
  max_queue_size=...)``; if it also takes ``x`` and ``y``, feedbench hands it arrays shaped like
  feedbench's traced source (*traced* mode: coverage and augmentation checks apply), otherwise
  it runs on your own data (*own-data* mode: throughput, memory, and the determinism checks that
  need no ids);
- a feedbench factory ``factory(spec, source)``, or its ``"module:callable"`` path;
- a dataset object (a ``keras.utils.PyDataset``, a generator, a ``tf.data.Dataset``, a torch
  ``DataLoader``): measured as built, since its worker settings cannot be changed on an object;
  it is sent to the measuring process by pickling (a generator cannot be: pass its factory).

Every setting runs in a child process under a time limit, as ``feedbench profile`` does; a
factory must therefore be importable there (defined in a module, not in the notebook itself).
"""

from __future__ import annotations

import inspect
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from feedbench.core import settings
from feedbench.core.errors import FeedbenchError
from feedbench.core.spec import Spec
from feedbench.generators.adapters import OBJECT_PREFIX, SETTINGS_PREFIX
from feedbench.measure import leaks
from feedbench.measure.setting import PROFILE_MEASURES, SettingResult
from feedbench.report import table
from feedbench.run import sweep


class ApiError(FeedbenchError, ValueError):
    """What was passed to ``feedbench.profile`` cannot be measured, and what to pass instead."""


@dataclass
class Profile:
    """The results of ``feedbench.profile``: one ``SettingResult`` per setting, and what to read them by."""

    name: str
    mode: str  # "traced" or "own data"
    spec: Spec
    results: list[SettingResult] = field(default_factory=list)
    note: str | None = None  # e.g. why the grid could not be applied to an object

    @property
    def problems(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for result in self.results:
            for problem in result.problems:
                found.setdefault(problem, []).append(table.setting_name(result))
        return found

    @property
    def failures(self) -> dict[str, str]:
        return {table.setting_name(r): r.error for r in self.results if r.error}

    def to_json(self) -> dict:
        from feedbench.measure.setting import SCHEMA_VERSION
        from feedbench.run.provenance import provenance

        return {
            "schema_version": SCHEMA_VERSION,
            "provenance": provenance(),
            "name": self.name,
            "mode": self.mode,
            "note": self.note,
            "settings": [r.to_json() for r in self.results],
        }

    def __str__(self) -> str:
        lines = [f"mode: {self.mode}" + (f"; {self.note}" if self.note else ""), table.render(self.spec, self.results)]
        return "\n".join(lines)

    def __rich__(self):
        return table.rich_table(self.spec, self.results, f"feedbench profile: {self.name} ({self.mode})")

    def _repr_html_(self) -> str:
        return table.html(self.spec, self.results, f"feedbench profile: {self.name} ({self.mode})", self.note)

    def plot(self):
        """Throughput and tree memory against workers, threads and processes apart (matplotlib)."""
        return table.plot(self.results, self.name)


def profile(
    dataset,
    *,
    workers: Sequence[int] = (1, 2, 4),
    use_multiprocessing: Sequence[bool] = (False, True),
    max_queue_size: int = 10,
    epochs: int = 3,
    timeout_s: float = 120.0,
    steps: int | None = None,
    samples: int = 512,
    batch_size: int = 32,
    measures: Sequence[str] = PROFILE_MEASURES,
    progress: Callable[[str], None] | None = None,
    soak: int | None = None,
) -> Profile:
    """Measure ``dataset`` (a factory, a ``module:callable`` path or a dataset object) over a grid.
    ``soak``: the memory measure's epochs (at least ``leaks.MIN_EPOCHS``), for leak verdicts."""
    if soak is not None and (not isinstance(soak, int) or soak < leaks.MIN_EPOCHS):
        raise ApiError(f"soak={soak!r} given; expected a whole number of epochs, {leaks.MIN_EPOCHS} or more")
    if not workers or any(not isinstance(w, int) or w < 0 for w in workers):
        raise ApiError(f"workers={workers!r} given; expected integers, 0 or more")
    if not (timeout_s > 0):
        raise ApiError(f"timeout_s={timeout_s!r} given; expected a positive number of seconds")
    try:
        options = settings.current()  # read once per call (unless a caller applied its own), for the whole sweep
    except ValueError as exc:
        raise ApiError(str(exc)) from None
    impl, name, mode, note, holder = _describe(dataset)
    try:
        base = Spec(
            impl,
            n_samples=samples,
            batch_size=batch_size,
            max_queue_size=max_queue_size,
            steps=steps,
            traced=mode == "traced",
        )
        grid = [(w, mp) for mp in use_multiprocessing for w in workers]
        if mode == "object":
            grid = grid[:1]  # an object keeps the settings it was built with
        specs = [replace(base, workers=w, use_multiprocessing=mp) for w, mp in grid]
        with settings.applied(options):
            results = sweep.sweep(
                specs,
                tuple(measures),
                epochs,
                timeout_s,
                progress=_progress(progress, len(specs)),
                soak=soak,
            )
    finally:
        if holder:
            holder.cleanup()
    return Profile(name, "own data" if mode == "object" else mode, base, results, note)


def _progress(say: Callable[[str], None] | None, total: int):
    if say is None:
        return None
    return lambda index, result: say(f"[{index + 1}/{total}] {table.setting_name(result)}")


def _describe(dataset):
    """(spec impl, display name, mode, note, temporary folder to remove) for what was passed."""
    if isinstance(dataset, str):
        if ":" not in dataset:
            raise ApiError(f"{dataset!r} given; expected 'package.module:callable', a factory or a dataset object")
        return dataset, dataset, "traced", None, None
    if callable(dataset) and (inspect.isfunction(dataset) or inspect.isclass(dataset) or inspect.ismethod(dataset)):
        module = getattr(dataset, "__module__", None)
        qualname = getattr(dataset, "__qualname__", "")
        if module in (None, "__main__") or "<locals>" in qualname:
            where = "a function" if "<locals>" in qualname else "the notebook or script itself"
            raise ApiError(
                f"factory {qualname or dataset!r} is defined in {where}; settings run in child processes, which "
                "import the factory: define it in a module (a .py file next to the notebook) and pass it, or pass "
                "'module:callable'"
            )
        path = f"{module}:{qualname}"
        params = inspect.signature(dataset).parameters
        if {"spec", "source"} <= set(params):
            return path, path, "traced", None, None
        traced = {"x", "y"} <= set(params)
        return f"{SETTINGS_PREFIX}{path}", path, "traced" if traced else "own data", None, None
    holder = tempfile.TemporaryDirectory(prefix="feedbench-api-")
    target = os.path.join(holder.name, "dataset.pkl")
    try:
        with open(target, "wb") as handle:
            pickle.dump(dataset, handle)
    except Exception as exc:
        holder.cleanup()
        raise ApiError(
            f"a {type(dataset).__name__} object cannot be sent to a measuring process ({type(exc).__name__}: {exc}); "
            "pass the factory that builds it instead (a function in a module, taking workers, "
            "use_multiprocessing, max_queue_size)"
        ) from None
    note = "an object keeps the worker settings it was built with: measured as built, the grid not applied"
    return f"{OBJECT_PREFIX}{target}", type(dataset).__name__, "object", note, holder
