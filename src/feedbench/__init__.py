"""feedbench: how well does this data generator feed my model?

Throughput, whole-process-tree memory and stream determinism of Keras data
generators (PyDataset / Sequence, Python generators, tf.data), driven exactly
the way ``model.fit`` drives them.
"""

__version__ = "0.1.0"
