"""A script-style module that seeds NumPy's global RNG at import ("for reproducibility"),
then augments from it: reproducible in a fresh process, not within one that ran before."""

import numpy as np

from support.corpus import GlobalRngAugment

np.random.seed(1234)


def global_rng_augment(spec, source):
    return GlobalRngAugment(source.x, source.y, spec.batch_size, **spec.parallel_settings())
