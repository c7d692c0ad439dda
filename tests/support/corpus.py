"""Real-style generators, written from scratch in the style people copy, adapted only to read
feedbench's source (``source.x``, ``source.labels``; ``source.y`` is (label, id) when traced).

Each flawed one has a clean counterpart of the same style (same augmentation, same label
encoding, same structure), so a verdict is proven both ways: the flaw is flagged, and the
clean one is flagged for nothing. Expected verdicts live in tests/test_corpus.py.
"""

from __future__ import annotations

import math
import random
import threading

import keras
import numpy as np


def _onehot(labels, classes=4):
    return keras.utils.to_categorical(labels, classes)


# --------------------------------------------------------------------------- the classic Sequence


class ClassicSequence(keras.utils.Sequence):
    """The widely copied DataGenerator: indexes shuffled with np.random in on_epoch_end,
    floor-length __len__, a loop filling X and y, one-hot labels."""

    def __init__(self, x, labels, batch_size=32, shuffle=True, **kwargs):
        super().__init__(**kwargs)
        self.x, self.labels, self.batch_size, self.shuffle = x, labels, batch_size, shuffle
        self.on_epoch_end()

    def __len__(self):
        return int(np.floor(len(self.x) / self.batch_size))

    def __getitem__(self, index):
        indexes = self.indexes[index * self.batch_size : (index + 1) * self.batch_size]
        X = np.empty((len(indexes), *self.x.shape[1:]), dtype=np.float32)
        y = np.empty(len(indexes), dtype=int)
        for i, ID in enumerate(indexes):
            X[i] = self.x[ID]
            y[i] = self.labels[ID]
        return X, _onehot(y)

    def on_epoch_end(self):
        self.indexes = np.arange(len(self.x))
        if self.shuffle:
            np.random.shuffle(self.indexes)


class ClassicSequenceFixed(ClassicSequence):
    """The same, with the fixes: ceil-length __len__, a shuffle seeded per epoch."""

    def __init__(self, x, labels, batch_size=32, shuffle=True, seed=0, **kwargs):
        self.seed, self.epoch = seed, -1
        super().__init__(x, labels, batch_size, shuffle, **kwargs)

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1
        self.indexes = np.arange(len(self.x))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(self.indexes)


def classic(spec, source):
    return ClassicSequence(source.x, source.labels, spec.batch_size, spec.shuffle, **spec.parallel_settings())


def classic_fixed(spec, source):
    return ClassicSequenceFixed(
        source.x, source.labels, spec.batch_size, spec.shuffle, spec.seed, **spec.parallel_settings()
    )


# --------------------------------------------------------------------------- augmentation from the global RNG


def _rotate_shift_noise(x, rng):
    """Rotation by quarter turns, a shift, and Gaussian noise: what people bolt on."""
    out = np.empty_like(x)
    for i in range(len(x)):
        image = np.rot90(x[i], k=int(rng.integers(0, 4)) if hasattr(rng, "integers") else rng.randint(0, 4))
        shift = int(rng.integers(-3, 4)) if hasattr(rng, "integers") else rng.randint(-3, 4)
        image = np.roll(image, shift, axis=1)
        out[i] = image + rng.normal(0.0, 0.1, image.shape).astype(np.float32)
    return out


class GlobalRngAugment(keras.utils.PyDataset):
    """Rotation, shift and noise drawn from np.random (the module seeds it at import)."""

    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def draws(self, index):
        return np.random

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return _rotate_shift_noise(self.x[rows], self.draws(index)), self.y[rows]


class KeyedAugment(GlobalRngAugment):
    """The same augmentation, drawn from a generator keyed by (seed, epoch, batch index).

    The epoch advances in on_epoch_end, which Keras calls from the thread that then starts the
    next epoch's worker pool; on_epoch_begin comes from the main thread and races that fork (an
    epoch counted there reaches some workers and not others: not reproducible under processes).
    """

    def __init__(self, x, y, batch_size, seed=0, **kwargs):
        super().__init__(x, y, batch_size, **kwargs)
        self.seed, self.epoch = seed, 0

    def on_epoch_end(self):
        self.epoch += 1

    def draws(self, index):
        return np.random.default_rng([self.seed, self.epoch, index])


def global_rng_augment(spec, source):
    return GlobalRngAugment(source.x, source.y, spec.batch_size, **spec.parallel_settings())


def keyed_augment(spec, source):
    return KeyedAugment(source.x, source.y, spec.batch_size, spec.seed, **spec.parallel_settings())


# --------------------------------------------------------------------------- an augmenter object with its own RNG


class Augmenter:
    """imgaug-style: an object holding its own seeded RandomState, called per batch."""

    def __init__(self, seed):
        self.random_state = np.random.RandomState(seed)

    def __call__(self, images):
        flips = self.random_state.rand(len(images)) < 0.5
        out = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
        return out * self.random_state.uniform(0.8, 1.2, (len(images), 1, 1, 1)).astype(np.float32)


class AugmenterSequence(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, augmenter, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.augmenter = x, y, batch_size, augmenter

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.augmenter(np.array(self.x[rows])), self.y[rows]


def augmenter_object(spec, source):
    return AugmenterSequence(source.x, source.y, spec.batch_size, Augmenter(spec.seed), **spec.parallel_settings())


# --------------------------------------------------------------------------- the Keras 3 migration mistake


class ForgotsSuperKwargs(keras.utils.Sequence):
    """A Keras 2 Sequence moved to Keras 3 without passing **kwargs on: workers never apply."""

    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.array(self.x[rows]), self.y[rows]


class PassesSuperKwargs(ForgotsSuperKwargs):
    def __init__(self, x, y, batch_size, **kwargs):
        keras.utils.Sequence.__init__(self, **kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size


def forgot_super_kwargs(spec, source):
    return ForgotsSuperKwargs(source.x, source.y, spec.batch_size, **spec.parallel_settings())


def passes_super_kwargs(spec, source):
    return PassesSuperKwargs(source.x, source.y, spec.batch_size, **spec.parallel_settings())


# --------------------------------------------------------------------------- batch structures fit accepts


class Structured(keras.utils.PyDataset):
    """Dict inputs, dict targets with one-hot labels, and sample weights: all things fit accepts."""

    def __init__(self, x, labels, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.labels, self.batch_size = x, labels, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        labels = self.labels[rows]
        weights = np.where(labels == 0, 2.0, 1.0).astype(np.float32)
        return {"image": np.array(self.x[rows])}, {"class": _onehot(labels), "shifted": labels + 1}, weights


def structured(spec, source):
    return Structured(source.x, source.labels, spec.batch_size, **spec.parallel_settings())


class XOnly(Structured):
    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return (np.array(self.x[rows]),)


def x_only(spec, source):
    return XOnly(source.x, source.labels, spec.batch_size, **spec.parallel_settings())


class Endless(keras.utils.PyDataset):
    """An infinite PyDataset (num_batches None): fit needs steps_per_epoch."""

    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.per_epoch = math.ceil(len(x) / batch_size)

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        index %= self.per_epoch
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.array(self.x[rows]), self.y[rows]


def endless(spec, source):
    return Endless(source.x, source.y, spec.batch_size, **spec.parallel_settings())


# --------------------------------------------------------------------------- generators and tf.data


class ThreadSafeIter:
    """The 'threadsafe_generator' decorator people copy: a lock around next()."""

    def __init__(self, it):
        self.it, self.lock = it, threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            return next(self.it)


def _batches(source, batch_size):
    while True:
        for i in range(math.ceil(source.n / batch_size)):
            rows = slice(i * batch_size, (i + 1) * batch_size)
            yield np.array(source.x[rows]), source.y[rows]


def threadsafe_iterator(spec, source):
    return ThreadSafeIter(_batches(source, spec.batch_size))


def plain_generator(spec, source):
    return _batches(source, spec.batch_size)


def tfdata_unseeded(spec, source):
    """shuffle() without a seed and Python's random inside a py_function: common, not reproducible."""
    import tensorflow as tf

    def jitter(image):
        return (image.numpy() + random.uniform(-0.1, 0.1)).astype(np.float32)

    def augment(image, label):
        image = tf.py_function(jitter, [image], tf.float32)
        image.set_shape(source.x.shape[1:])
        return image, label

    data = tf.data.Dataset.from_tensor_slices((source.x, source.y)).shuffle(source.n).repeat()
    return data.map(augment).batch(spec.batch_size)


def tfdata_seeded(spec, source):
    """The same pipeline, seeded: shuffle(seed=...), and stateless draws keyed by a running counter."""
    import tensorflow as tf

    def augment(index, sample):
        image, label = sample
        delta = tf.random.stateless_uniform([], seed=[spec.seed, index], minval=-0.1, maxval=0.1)
        return image + delta, label

    data = tf.data.Dataset.from_tensor_slices((source.x, source.y)).shuffle(source.n, seed=spec.seed).repeat()
    return data.enumerate().map(lambda i, s: augment(tf.cast(i, tf.int32), s)).batch(spec.batch_size)
