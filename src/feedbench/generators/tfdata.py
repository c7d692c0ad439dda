"""``tfdata`` and ``tfdata_pyfunc``: tf.data pipelines.

``tfdata`` is native: from_tensor_slices, a seeded shuffle, batch, stateless
augmentation in ``map(num_parallel_calls=AUTOTUNE)``, prefetch. The stateless
seeds come from a batch counter that runs on across epochs (the pipeline
repeats, and fit is given ``steps_per_epoch``), so augmentation differs
between epochs yet is reproducible.

``tfdata_pyfunc`` is the common bridge from Python code: a counter of batches
mapped in parallel through ``tf.numpy_function`` that calls the same keyed
batch function as ``keyed``.
"""

from __future__ import annotations

import numpy as np

from feedbench.core.spec import Built, Spec, not_applicable
from feedbench.generators.keying import BRIGHTNESS_JITTER, epoch_order, keyed_batch


def build(spec: Spec, source) -> Built:
    import tensorflow as tf

    if spec.workload != "copy":
        # The native pipeline's per-batch cost is its own graph work; a Python
        # workload would turn it into tfdata_pyfunc.
        raise ValueError(
            f"workload {spec.workload!r} given for tfdata; a native tf.data pipeline "
            "runs only the 'copy' workload (use tfdata_pyfunc for Python work)"
        )
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(source.x), source.y))
    if spec.shuffle:
        ds = ds.shuffle(source.n, seed=spec.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size).repeat().enumerate()

    def augment(counter, batch):
        x, y = batch
        n = tf.shape(x)[0]
        key = tf.stack([tf.constant(spec.seed, tf.int64), counter])
        x = tf.image.stateless_random_flip_left_right(x, seed=key)
        shift = tf.random.stateless_uniform(
            [n, 1, 1, 1], seed=key + [0, 1 << 40], minval=-BRIGHTNESS_JITTER, maxval=BRIGHTNESS_JITTER
        )
        return x + shift, y

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return Built(
        spec,
        "tfdata",
        ds,
        source,
        steps_per_epoch=spec.batches_per_epoch,
        not_applicable=not_applicable("tfdata", spec),
    )


def build_pyfunc(spec: Spec, source) -> Built:
    import tensorflow as tf

    per_epoch = spec.batches_per_epoch
    x_shape = (None, *source.x.shape[1:])
    y_shape = (None, *source.y.shape[1:])

    def make_batch(counter):
        epoch, index = divmod(int(counter), per_epoch)
        order = epoch_order(spec.seed, epoch, source.n, spec.shuffle)
        return keyed_batch(source, order, spec.batch_size, index, spec.seed, epoch, spec.work)

    def as_tensors(counter):
        x, y = tf.numpy_function(make_batch, [counter], (tf.float32, tf.int64), stateful=False)
        x.set_shape(x_shape)
        y.set_shape(y_shape)
        return x, y

    ds = tf.data.Dataset.counter().map(as_tensors, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return Built(
        spec,
        "tfdata",
        ds,
        source,
        steps_per_epoch=per_epoch,
        not_applicable=not_applicable("tfdata", spec),
    )
