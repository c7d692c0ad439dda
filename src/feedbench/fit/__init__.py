"""Feeding a dataset as ``model.fit`` does: fit's call order (``driver``), its time limit and
clean-up (``supervise``), how failures read (``failures``), the one fence around Keras's private
API (``keras_api``), and the real-``fit`` runs built on them: training, the tap, legacy Keras 2.
"""
