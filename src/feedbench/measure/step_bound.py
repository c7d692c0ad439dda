"""The CPU stand-in for a GPU step: does the loader keep up with a model whose step costs a fixed
time and leaves the CPU free?

On a GPU the train step runs on the device while the host waits: the loader's workers, and any
hand-off work the consuming process does between steps, either hide behind the step or add to
it. Here a model with almost no compute is fitted with a callback that sleeps ``step_s`` after
every batch (a sleep releases the GIL, as waiting on a device does), so:

- ``ceiling_samples_per_s``: the same model fed one prepared batch over and over (what a loader
  doing no work delivers: batch_size / (step_s + the step's own overhead));
- ``samples_per_s``: the loader under test, with fit's own data arguments;
- ``of_ceiling``: their ratio, 1.0 when the loader's work (and its hand-off in the consuming
  process) hides entirely behind the step. Both are measured in the same process, back to back.

``STEP_S`` is 20 ms, the GPU step the shm targets were set for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from feedbench.core.records import Record
from feedbench.core.spec import Spec
from feedbench.fit.supervise import DEFAULT_TIMEOUT_S, supervised
from feedbench.fit.training import one_batch_dataset
from feedbench.generators import build
from feedbench.generators.keying import keyed_batch

STEP_S = 0.02


@dataclass
class StepBoundFigures(Record):
    step_s: float | None = None
    samples_per_s: float | None = None
    ceiling_samples_per_s: float | None = None
    of_ceiling: float | None = None


def _callbacks(step_s: float):
    import keras

    class DeviceStep(keras.callbacks.Callback):
        """The time a device step takes, spent with the GIL released."""

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(step_s)

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return DeviceStep(), EpochClock()


def _model(x_shape, y_shape):
    """Next to no compute: the step's cost is the sleep."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=x_shape),
            keras.layers.GlobalAveragePooling2D() if len(x_shape) == 3 else keras.layers.Flatten(),
            keras.layers.Dense(int(np.prod(y_shape)) if y_shape else 1),
        ]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _fit_rate(model, data, samples, epochs, step_s, name, timeout_s, closers=(), **fit_kwargs):
    step, clock = _callbacks(step_s)
    with supervised(name, timeout_s, closers=closers):
        model.fit(data, epochs=epochs, verbose=0, callbacks=[step, clock], **fit_kwargs)
    return samples / float(np.median(clock.seconds[1:]))  # the first epoch builds the step


def measure_step_bound(
    spec: Spec, epochs: int = 3, timeout_s: float = DEFAULT_TIMEOUT_S, plugins=(), step_s: float = STEP_S
) -> StepBoundFigures:
    if epochs < 2:
        raise ValueError(f"epochs={epochs} given; expected 2 or more (the first builds the step)")
    built = build(spec, plugins)
    try:
        source = built.source
        x, y = keyed_batch(source, np.arange(source.n), spec.batch_size, 0, spec.seed, 0, spec.work)
        samples = built.expected_samples
        batches = built.expected_batches
        model = _model(x.shape[1:], y.shape[1:])
        ceiling = _fit_rate(
            model,
            one_batch_dataset(x, y, batches),
            batches * len(x),
            epochs,
            step_s,
            "ceiling (one prepared batch)",
            timeout_s,
            shuffle=False,
        )
        rate = _fit_rate(
            model, built.dataset, samples, epochs, step_s, spec.impl, timeout_s, [built.close], **built.fit_kwargs()
        )
    finally:
        built.close()
    return StepBoundFigures(step_s, rate, ceiling, rate / ceiling)
