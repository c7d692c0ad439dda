"""A measuring child that says everything and then never exits (a non-daemon thread holds its
interpreter's shutdown, as a backend's iterator waiting on its prefetch thread does). Like
TensorFlow's AutoGraph, it leaves a temporary file that only a normal exit would remove."""

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
    yield {"said": "everything"}
    threading.Thread(target=time.sleep, args=(3600,), name="holds-the-exit").start()


if __name__ == "__main__":
    sys.exit(serve(_handler))
