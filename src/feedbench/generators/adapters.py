"""Datasets that are not ``factory(spec, source)``: a factory taking keyword settings, and a
dataset object sent pickled (the Python API's ``feedbench.profile`` uses both).

Each is named in the registry by a prefix, so a measuring child process builds it from the
name alone: ``settings:package.module:callable`` and ``object:/path/to/dataset.pkl``.
"""

from __future__ import annotations

import functools
import inspect
import pickle
from collections.abc import Callable

SETTINGS_PREFIX = "settings:"
OBJECT_PREFIX = "object:"


def settings_factory(target: Callable) -> Callable:
    """``target(workers=..., use_multiprocessing=..., max_queue_size=...[, x=..., y=...])`` as factory(spec, source).

    Only the keywords ``target`` takes are passed; ``x`` and ``y`` (the traced source, ids in
    ``y[:, 1]``) only when it takes both.
    """
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def factory(spec, source):
        settings = {k: v for k, v in spec.parallel_settings().items() if takes_any or k in params}
        if {"x", "y"} <= set(params):
            settings.update(x=source.x, y=source.y)
        return target(**settings)

    return factory


@functools.cache
def _load(path: str):
    with open(path, "rb") as handle:
        return pickle.load(handle)


def object_factory(path: str) -> Callable:
    """The pickled dataset object at ``path``, whatever the spec asks: an object keeps its settings."""

    def factory(spec, source):
        return _load(path)

    return factory
