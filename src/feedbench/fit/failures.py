"""How a failure in the data path reads: one line that says what failed, and where.

TensorFlow wraps a generator's Python exception in its own error with a traceback dump;
the original ``SomeError: message`` line is what a person needs.
"""

from __future__ import annotations

from feedbench.core.errors import BadDataset, FeedbenchError, GeneratorFailed


def explain(exc: BaseException, name: str, where: str) -> FeedbenchError:
    """The typed, one-line error for an exception raised while ``name`` was feeding at ``where``."""
    text = one_line(exc)
    if "element of shape" in text or "shape" in text and "expected" in text:
        return BadDataset(f"{name}: batches change shape at {where}: {text}")
    if "length 0" in text or "at least one batch" in text:
        return BadDataset(f"{name}: the dataset is empty ({text}); expected at least one batch")
    return GeneratorFailed(f"{name} raised at {where}: {text}")


def one_line(exc: BaseException) -> str:
    """The innermost 'SomeError: message' line, also out of TensorFlow's wrapped errors."""
    message = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):  # the original Python error comes last in a TF traceback dump
        head = line.split(":", 1)[0].split()[-1] if ":" in line else ""
        if head.endswith(("Error", "Exception", "Interrupt", "Exit")) and not line.startswith("File "):
            return line.split("}}", 1)[-1].strip()
    first = lines[0].split("}}", 1)[-1].strip() if lines else ""
    return f"{type(exc).__name__}: {first}"
