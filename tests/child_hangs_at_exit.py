"""A measuring child that says everything and then would never exit (a non-daemon thread holds its
interpreter's shutdown, as a backend's iterator waiting on its prefetch thread does). Like
TensorFlow's AutoGraph, it leaves a temporary file that only a normal exit would remove. With
``atexit_marker`` in the request, it holds nothing and an exit handler writes that file (a teardown
that ran)."""

import atexit
import os
import sys
import tempfile
import threading
import time

from feedbench.core.child import serve


def _handler(request):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as generated:
        generated.write("# generated\n")
    atexit.register(os.remove, generated.name)
    if request.get("atexit_marker"):
        atexit.register(lambda: open(request["atexit_marker"], "w").close())
    yield {"said": "everything"}
    if request.get("atexit_marker"):
        return
    threading.Thread(target=time.sleep, args=(3600,), name="holds-the-exit").start()


if __name__ == "__main__":
    sys.exit(serve(_handler))
