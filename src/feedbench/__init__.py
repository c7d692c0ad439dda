"""feedbench: how well does this data generator feed my model?

Throughput, whole-process-tree memory and stream determinism of Keras data
generators (PyDataset / Sequence, Python generators, tf.data), driven exactly
the way ``model.fit`` drives them.

    import feedbench
    result = feedbench.profile("mypkg.feeds:make_dataset")   # or a factory, or a dataset object
"""

from feedbench.core.version import __version__

__all__ = ["Profile", "__version__", "profile"]


def __getattr__(name: str):
    # The API loads on first use: importing feedbench (or a layer of it) stays cheap.
    if name in ("profile", "Profile"):
        from feedbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'feedbench' has no attribute {name!r}")
