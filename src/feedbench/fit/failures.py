"""How a failure in the data path reads: one line that says what failed, and where.

TensorFlow wraps a generator's Python exception in its own error with a traceback dump;
the original ``SomeError: message`` line is what a person needs.
"""

from __future__ import annotations

from feedbench.core.errors import BadDataset, FeedbenchError, GeneratorFailed, one_line


def explain(exc: BaseException, name: str, where: str) -> FeedbenchError:
    """The typed, one-line error for an exception raised while ``name`` was feeding at ``where``."""
    text = one_line(exc)
    if _raised_by_keras(exc):
        return BadDataset(f"{name}: Keras's fit rejected the dataset at {where}, not the generator: {text}")
    if "element of shape" in text:  # TensorFlow's from_generator holds every batch to the first's spec
        return BadDataset(f"{name}: batches change shape at {where}: {text}")
    if "could not be converted to the expected type" in text:
        return BadDataset(f"{name}: batches change type at {where}: {text}")
    if "length 0" in text or "at least one batch" in text:
        return BadDataset(f"{name}: the dataset is empty ({text}); expected at least one batch")
    return GeneratorFailed(f"{name} raised at {where}: {text}")


def _raised_by_keras(exc: BaseException) -> bool:
    """Whether Keras's own data-adapter code raised this (a type or argument it refuses)."""
    import os

    keras_adapters = os.path.join("keras", "src", "trainers", "data_adapters")
    frame = exc.__traceback__
    innermost = None
    while frame is not None:
        innermost = frame.tb_frame.f_code.co_filename
        frame = frame.tb_next
    return innermost is not None and keras_adapters in innermost and isinstance(exc, (ValueError, TypeError))
