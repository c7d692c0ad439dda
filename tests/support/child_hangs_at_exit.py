"""Measuring children for the parent's exit handling (tests/test_faults.py). Like TensorFlow's
AutoGraph, each leaves a temporary file that only a normal exit would remove.

- Through ``serve``: says everything; with ``atexit_marker`` in the request, an exit handler would
  write that file (a teardown that ran: ``serve`` ends the child without one).
- With ``done_then_hang``: says everything without ``serve``'s own end, then a non-daemon thread
  holds its interpreter's shutdown (as a backend's iterator waiting on its prefetch thread does):
  what the parent's exit grace is for.
"""

import atexit
import json
import os
import sys
import tempfile
import threading
import time

from feedbench.core.child import _DONE_KEY, _write, serve


def _leave_a_generated_file():
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as generated:
        generated.write("# generated\n")
    atexit.register(os.remove, generated.name)


def _handler(request):
    _leave_a_generated_file()
    if request.get("atexit_marker"):
        atexit.register(lambda: open(request["atexit_marker"], "w").close())
    yield {"said": "everything"}


def _done_then_hang(request) -> int:
    _leave_a_generated_file()
    _write(request["_out"], {"said": "everything"})
    _write(request["_out"], {_DONE_KEY: True})
    threading.Thread(target=time.sleep, args=(3600,), name="holds-the-exit").start()
    return 0


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        request = json.load(handle)
    sys.exit(_done_then_hang(request) if request.get("done_then_hang") else serve(_handler))
