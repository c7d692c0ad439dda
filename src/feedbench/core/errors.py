"""The errors feedbench raises for bad input: one clear line each.

Every message names what was given and what was expected, so a user can act
on it without reading a traceback.
"""


class FeedbenchError(Exception):
    """Base class: anything feedbench reports about its input or a run."""


class UnknownImplementation(FeedbenchError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class PluginError(FeedbenchError):
    """A plug-in path that does not import, is not callable, or builds nothing usable."""


class BadDataset(FeedbenchError, ValueError):
    """A dataset Keras cannot feed: wrong type, length 0, batches that change shape."""


class MissingPackage(FeedbenchError):
    """An implementation needs a package that is not installed: its settings are n/a, not failed."""


class FactoryFailed(FeedbenchError):
    """The factory that builds a dataset raised."""


class GeneratorFailed(FeedbenchError):
    """The implementation under test raised while producing a batch."""


class ForkedTensorflowFailed(GeneratorFailed):
    """A worker hung or died after TensorFlow ran in forked workers (which do so at random): the one
    failure a measure tries again."""


class DriveTimeout(FeedbenchError, TimeoutError):
    """A run exceeded its time limit."""


class WorkerLeak(FeedbenchError):
    """A worker process survived the call that started it."""


class CacheError(FeedbenchError, OSError):
    """The on-disk source cache cannot be created or written."""


class LeftRunning(UserWarning):
    """The code under test left processes running after its run; feedbench stopped them."""


def show_warnings_as_lines() -> None:
    """Print feedbench's own warnings as one ``feedbench: warning: ...`` line each (the command
    line and measuring children); others keep Python's format."""
    import sys
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LeftRunning):
            print(f"feedbench: warning: {message}", file=file or sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


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
