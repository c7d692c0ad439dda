"""A measuring child that says everything and then never exits (a non-daemon thread holds its
interpreter's shutdown, as a backend's iterator waiting on its prefetch thread does)."""

import sys
import threading
import time

from feedbench.core.child import serve


def _handler(request):
    yield {"said": "everything"}
    threading.Thread(target=time.sleep, args=(3600,), name="holds-the-exit").start()


if __name__ == "__main__":
    sys.exit(serve(_handler))
