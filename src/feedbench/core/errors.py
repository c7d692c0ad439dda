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


class GeneratorFailed(FeedbenchError):
    """The implementation under test raised while producing a batch."""


class DriveTimeout(FeedbenchError, TimeoutError):
    """A run exceeded its time limit."""


class WorkerLeak(FeedbenchError):
    """A worker process survived the call that started it."""
