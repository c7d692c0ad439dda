"""Legacy Keras 2 (``tf_keras``): what ``fit`` delivers when ``workers`` and
``use_multiprocessing`` are arguments of ``fit``.

Keras 2 feeds a ``Sequence`` through an ``OrderedEnqueuer`` and a plain
Python generator through a ``GeneratorEnqueuer``; with
``use_multiprocessing=True`` the latter runs the generator in every worker
process, each on its own copy. ``run_legacy`` runs in a fresh process with
``TF_USE_LEGACY_KERAS=1`` (``tf.keras`` is then ``tf_keras``), started by
``feedbench.run.legacy``; the tap (``feedbench.fit.tap``) records the sample
ids the train step receives.

Needs ``pip install -e ".[legacy]"`` (tf_keras matching the TensorFlow version).
"""

from __future__ import annotations

import importlib.util
import math

KINDS = ("sequence", "generator")


def available() -> bool:
    return importlib.util.find_spec("tf_keras") is not None


def run_legacy(request: dict) -> dict:
    """In a process started with TF_USE_LEGACY_KERAS=1: a legacy fit of the request's kind, tapped."""
    import tensorflow as tf
    import tf_keras

    from feedbench.core.data import make_source
    from feedbench.core.spec import Spec
    from feedbench.fit.tap import FitStream, Tap, count_hooks
    from feedbench.generators.keying import epoch_order, keyed_batch
    from feedbench.generators.pygen import keyed_batches

    keras = tf.keras
    if not keras.__name__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {keras.__name__}; expected tf_keras (TF_USE_LEGACY_KERAS=1)")
    spec = Spec("keyed", n_samples=request["n"], batch_size=request["batch_size"])
    source = make_source(spec.size, spec.n_samples, spec.seed, traced=True)

    class KeyedSequence(keras.utils.Sequence):
        """``keyed``'s stream as a Keras 2 Sequence."""

        def __init__(self):
            self.epoch = 0
            self.order = epoch_order(spec.seed, 0, source.n, spec.shuffle)

        def __len__(self):
            return math.ceil(source.n / spec.batch_size)

        def __getitem__(self, idx):
            return keyed_batch(source, self.order, spec.batch_size, idx, spec.seed, self.epoch, spec.work)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = epoch_order(spec.seed, self.epoch, source.n, spec.shuffle)

    stream = FitStream(f"tf_keras {tf_keras.__version__}")
    fit_args = {"workers": request["workers"], "use_multiprocessing": request["use_multiprocessing"]}
    if request["kind"] == "sequence":
        data = KeyedSequence()
        count_hooks(data, stream.hooks)
    else:
        data = keyed_batches(spec, source)
        fit_args["steps_per_epoch"] = spec.batches_per_epoch
    tap = Tap(keras)
    model = tap.model(source.x.shape[1:])
    model.fit(data, epochs=request["epochs"], shuffle=False, verbose=0, callbacks=[tap.callback()], **fit_args)
    stream.epochs = tap.epochs
    return {**stream.summary(source.n), "ids": stream.epochs}
