"""Feed any implementation exactly as ``model.fit`` feeds it, and always clean up.

The driver builds the active backend's own epoch iterator (``TFEpochIterator``,
``JAXEpochIterator`` or ``TorchEpochIterator``) over Keras's own data adapter,
with fit's arguments, and walks it in fit's order:

1. construct the iterator (the TensorFlow adapter reads batches 0 and 1 in the
   main process to infer the tensor spec);
2. on jax and torch, fit's symbolic build of a fresh model takes one batch
   (a whole ``on_epoch_begin``: with workers, a pool starts for it);
3. ``reset()``: the extra ``on_epoch_end`` before the first epoch;
4. for each epoch: ``on_epoch_begin``, one ``next()`` per step, ``on_epoch_end``.

It yields each delivered batch with the time it arrived. The walk runs under
``supervise.supervised``: whatever ends the run (the end, an exception in the
generator, a consumer that stops early, the time limit), no worker process it
started survives it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from feedbench.core.errors import BadDataset
from feedbench.core.spec import Built
from feedbench.fit import keras_api
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S, supervised

backend = keras_api.backend


@dataclass(slots=True)
class Batch:
    epoch: int  # 0-based, as fit counts
    step: int
    x: Any  # as fit's train step gets it: an array, or a dict / list / tuple of them
    y: Any  # None for an (x,) batch
    sample_weight: Any  # None unless the batch is (x, y, sample_weight)
    rows: int  # samples in the batch
    t: float  # time.perf_counter() when the batch reached the consumer


def drive(
    built: Built,
    epochs: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    materialize: bool = True,
    between_epochs: Callable[[int], None] | None = None,
    watch: Callable[[Any], None] | None = None,
) -> Iterator[Batch]:
    """Yield every batch ``fit`` would deliver over ``epochs`` epochs.

    ``materialize`` turns tensors into NumPy arrays (needed to look at the
    content); without it the consumer gets the backend's own tensors.
    ``between_epochs(epoch)`` is called after each epoch's ``on_epoch_end``
    (Keras's worker pool for it stopped), before the next epoch begins.
    ``watch(batch)`` sees each batch a PyDataset returns, where Keras's adapter
    takes it (``keras_api.watch_batches``).
    Consume it with ``contextlib.closing`` (or to the end) so that an early
    stop cleans up at once.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} given; expected 1 or more")
    with supervised(built.spec.impl, timeout_s, where="start-up") as feeding:
        feeding.closers.append(built.close)
        feeding.iterator = keras_api.epoch_iterator(built.dataset, **built.fit_kwargs())
        if watch is not None:
            keras_api.watch_batches(feeding.iterator, watch)
        # The epochs run in a generator of their own: once it is closed, only ``feeding`` holds the
        # backend's iterator, which the clean-up destroys before the loader stops (see supervised).
        yield from _epochs(built, feeding, epochs, materialize, between_epochs)


def _epochs(built: Built, feeding, epochs: int, materialize: bool, between_epochs=None) -> Iterator[Batch]:
    name = built.spec.impl
    iterator = feeding.iterator
    feeding.waiting()  # from here on, between the batches the consumer takes (the stall watch's cue)
    if backend() in ("jax", "torch"):
        _first_batch(iterator)  # fit's symbolic build on a fresh model
    iterator.reset()  # the on_epoch_end fit calls before the first epoch
    # TensorFlow's adapter already holds every batch to the spec of the
    # first two; the other backends check nothing, so we do.
    check = _ShapeCheck(name) if backend() != "tensorflow" else None
    for epoch in range(epochs):
        with iterator.catch_stop_iteration():
            for step, (_, _, data) in enumerate(iterator):
                feeding.position = (epoch, step)
                x, y, weights = _unpack(batch_of(data), materialize)  # where the backend's iterator waits
                feeding.arrived()
                arrived = time.perf_counter()
                if check:
                    check((x, y, weights), feeding.where())
                feeding.check()
                yield Batch(epoch, step, x, y, weights, _rows(x, y, weights, feeding.where()), arrived)
                feeding.waiting()
        if between_epochs is not None:
            between_epochs(epoch)
    feeding.arrived()


def run(built: Built, epochs: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, materialize: bool = True) -> list[Batch]:
    """All batches of a run, as a list."""
    with contextlib.closing(drive(built, epochs, timeout_s, materialize)) as batches:
        return list(batches)


# --------------------------------------------------------------------------- fit's data path


def _first_batch(iterator) -> None:
    """What fit's symbolic build does: take one batch, then leave the epoch open."""
    for _, _, data in iterator:
        batch_of(data)
        break


def batch_of(data):
    """The batch in what fit's epoch iterator yields for one step."""
    # fit hands its train step either a list of batches (jax, torch) or the
    # iterator itself (tensorflow), from which the step takes one.
    if isinstance(data, (list, tuple)):
        return data[0]
    return next(data)


def _unpack(batch, materialize: bool):
    """(x, y, sample_weight) of a batch as fit reads it: a tuple of 1 to 3 parts, or x alone."""
    if isinstance(batch, (tuple, list)):
        if not 1 <= len(batch) <= 3:
            raise BadDataset(
                f"a batch is a {type(batch).__name__} of {len(batch)} items; expected (x,), (x, y) or "
                "(x, y, sample_weight)"
            )
        parts = list(batch) + [None] * (3 - len(batch))
    else:  # an array or a dict: fit takes it as x alone
        parts = [batch, None, None]
    if materialize:
        parts = [None if part is None else _to_numpy(part) for part in parts]
    return tuple(parts)


def _to_numpy(structure):
    if isinstance(structure, dict):
        return {key: _to_numpy(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_to_numpy(value) for value in structure)
    return np.asarray(structure)


def leaves(structure) -> list:
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure, key=str) for leaf in leaves(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for part in structure for leaf in leaves(part)]
    return [structure]


def _rows(x, y, weights, where: str) -> int:
    """The batch's number of samples; every part must have it, and it must not be 0."""
    sizes = {}
    for name, part in (("x", x), ("y", y), ("sample_weight", weights)):
        for leaf in leaves(part):
            if not getattr(leaf, "shape", None):
                raise BadDataset(
                    f"the batch at {where} has a {name} without a batch dimension; "
                    "expected arrays of shape (batch, ...)"
                )
            sizes.setdefault(int(leaf.shape[0]), name)
    if not sizes:
        raise BadDataset(f"the batch at {where} has no inputs; expected (x,), (x, y) or (x, y, sample_weight)")
    if len(sizes) > 1:
        described = ", ".join(f"{name} {rows}" for rows, name in sizes.items())
        raise BadDataset(
            f"the batch at {where} has parts of different lengths ({described} rows); expected "
            "one number of samples for x, y and sample_weight"
        )
    rows = next(iter(sizes))
    if rows == 0:
        raise BadDataset(f"the batch at {where} has 0 samples; expected at least one")
    return rows


class _ShapeCheck:
    """Batches may differ in length, never in structure, sample shape or dtype."""

    def __init__(self, name: str):
        self.name = name
        self.first = None

    def __call__(self, parts, where: str) -> None:
        seen = tuple(_describe(part) for part in parts)
        if self.first is None:
            self.first = seen
            return
        if seen != self.first:
            names = ("x", "y", "sample_weight")
            got = "; ".join(f"{n} {d}" for n, d, f in zip(names, seen, self.first) if d != f)
            expected = "; ".join(f"{n} {f}" for n, d, f in zip(names, seen, self.first) if d != f)
            raise BadDataset(f"{self.name}: batch at {where} has {got}; expected {expected} as in the first batch")


def _describe(part) -> str:
    found = leaves(part)
    if not found:
        return "none"
    return ", ".join(_shape(tuple(leaf.shape[1:]), str(leaf.dtype)) for leaf in found)


def _shape(dims, dtype) -> str:
    return f"(batch, {', '.join(map(str, dims))}) {dtype}" if dims else f"(batch,) {dtype}"
