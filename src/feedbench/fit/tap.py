"""What a real ``model.fit`` delivers: the reference the driver is checked against.

A tiny tap model trains on a traced dataset with ``run_eagerly=True``; its loss
records the sample ids (``y[:, 1]``) of every batch the train step receives,
and a callback marks the epochs. The dataset's ``on_epoch_begin`` /
``on_epoch_end`` calls are counted too. This works the same on every Keras
backend, and (``feedbench.run.legacy``) on legacy Keras 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from feedbench.core.records import Record
from feedbench.core.spec import Built
from feedbench.fit.keras_api import backend
from feedbench.fit.supervise import supervised


@dataclass
class FitStreamFigures(Record):
    """The worst epoch's coverage of a real fit, and the dataset hooks fit called."""

    missing: int | None = None
    duplicated: int | None = None
    on_epoch_begin_calls: int | None = None
    on_epoch_end_calls: int | None = None


@dataclass
class FitStream:
    """Sample ids per epoch as the train step received them, and the dataset hooks fit called."""

    backend: str
    epochs: list[list[int]] = field(default_factory=list)
    hooks: dict[str, int] = field(default_factory=dict)

    def summary(self, n: int) -> dict:
        """Coverage, repeats and order of each epoch, against a source of ``n`` samples."""
        per_epoch = []
        for ids in self.epochs:
            counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=n)
            per_epoch.append(
                {
                    "samples": len(ids),
                    "missing": int((counts == 0).sum()),
                    "duplicated": int((counts > 1).sum()),
                    "in_order": ids == sorted(ids),
                }
            )
        same_order = len(self.epochs) > 1 and all(e == self.epochs[0] for e in self.epochs[1:])
        return {
            "backend": self.backend,
            "epochs": per_epoch,
            "same_order_every_epoch": same_order,
            "hooks": dict(self.hooks),
        }

    def figures(self, n: int) -> FitStreamFigures:
        """The worst epoch's counts and the hook calls, flat (for the asv benchmarks)."""
        epochs = self.summary(n)["epochs"]
        return FitStreamFigures(
            missing=max(e["missing"] for e in epochs),
            duplicated=max(e["duplicated"] for e in epochs),
            on_epoch_begin_calls=self.hooks.get("on_epoch_begin"),
            on_epoch_end_calls=self.hooks.get("on_epoch_end"),
        )


class Tap:
    """The recording parts, shared by Keras 3 and legacy Keras 2 (give it the ``keras`` module)."""

    def __init__(self, keras):
        self.keras = keras
        self.epochs: list[list[int]] = []

    def loss(self, y_true, y_pred):
        ops = self.keras.ops if hasattr(self.keras, "ops") else None
        try:
            ids = ops.convert_to_numpy(y_true)[:, 1] if ops else np.asarray(y_true)[:, 1]
        except Exception:
            pass  # a tracer or symbolic tensor: jax and torch build the model on one, it carries no data
        else:
            if not self.epochs:
                raise RuntimeError("the tap's loss saw data before fit's first epoch began")
            self.epochs[-1].extend(int(i) for i in ids)
        if ops:
            return ops.mean(ops.square(y_pred))
        import tensorflow as tf

        return tf.reduce_mean(tf.square(y_pred))

    def callback(self):
        tap = self

        class MarkEpochs(self.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                tap.epochs.append([])

        return MarkEpochs()

    def model(self, input_shape):
        layers = self.keras.layers
        model = self.keras.Sequential([layers.Input(input_shape), layers.GlobalAveragePooling2D(), layers.Dense(1)])
        model.compile(optimizer="sgd", loss=self.loss, run_eagerly=True)
        return model


def count_hooks(dataset, hooks: dict[str, int]) -> None:
    """Count the dataset's epoch hooks as fit calls them (in the main process)."""
    for name in ("on_epoch_begin", "on_epoch_end"):
        original = getattr(dataset, name, None)
        if original is None:
            continue
        hooks[name] = 0

        def counted(*args, _original=original, _name=name, **kwargs):
            hooks[_name] += 1
            return _original(*args, **kwargs)

        setattr(dataset, name, counted)


def fit_stream(built: Built, epochs: int = 2, timeout_s: float = 300.0) -> FitStream:
    """Run a real ``model.fit`` on ``built`` (traced) and record what its train step receives."""
    import keras

    if not built.source.traced:
        raise ValueError(f"{built.spec.impl}: the tap needs a traced source (sample ids in y[:, 1])")
    stream = FitStream(backend())
    if built.family == "pydataset":
        count_hooks(built.dataset, stream.hooks)
    tap = Tap(keras)
    model = tap.model(built.source.x.shape[1:])
    try:
        with supervised(built.spec.impl, timeout_s, closers=[built.close]):
            model.fit(built.dataset, epochs=epochs, verbose=0, callbacks=[tap.callback()], **built.fit_kwargs())
    finally:
        built.close()
    stream.epochs = tap.epochs
    return stream
