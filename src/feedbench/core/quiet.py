"""TensorFlow's start-up lines held back, so a report is not buried under them.

TensorFlow 2.21 logs through absl before absl is initialised, and those lines (oneDNN notes,
"could not find cuda drivers", cuInit errors on a machine without a GPU) ignore
``TF_CPP_MIN_LOG_LEVEL``. feedbench's own processes import TensorFlow and list its devices once
with file descriptor 2 held in a temporary file, then pass on every line that is not one of
absl's start-up lines: a Python warning or error is never hidden. ``FEEDBENCH_TF_LOGS=1`` shows
everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

from feedbench.core import settings

# absl's format: a severity letter, MMDD, time, thread id, file:line] message
_ABSL_LINE = re.compile(r"^[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")  # F (fatal) lines always pass
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def is_start_up_line(line: str) -> bool:
    """Whether a line of standard error is one of absl's start-up lines (never a fatal one)."""
    return bool(_ABSL_LINE.match(line)) or line.startswith(_ABSL_PREAMBLE)


def start_tensorflow_quietly() -> None:
    """Import TensorFlow (when installed) and initialise its devices with absl's start-up lines
    held back; every other line written meanwhile is passed on to standard error."""
    if settings.current().tf_logs or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return  # jax and torch runs import TensorFlow only if a tf.data pipeline needs it
    sys.stderr.flush()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where a machine without a GPU logs cuInit errors
        except Exception:  # not installed, or broken: the code that needs it will say so in one line
            pass
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines():
                if not is_start_up_line(line):
                    print(line, file=sys.stderr)
