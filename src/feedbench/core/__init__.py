"""The ground floor: data sources, specs and what a build returns, errors, the process tree.

Nothing here imports Keras, TensorFlow or any other feedbench layer.
"""
