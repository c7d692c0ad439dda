"""One tf.data service server in its own process: ``python -m ... dispatcher`` or ``... worker ADDRESS``.

Prints ``ready <address>`` once serving (the dispatcher's address is what workers and consumers
are given), then serves until killed; it dies with the process that started it.
"""

from __future__ import annotations

import os
import signal
import sys

from feedbench.core.procs import die_with_parent
from feedbench.core.quiet import start_tensorflow_quietly


def main(argv: list[str]) -> int:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the starting process decides when servers stop
    start_tensorflow_quietly()
    import tensorflow as tf

    service = tf.data.experimental.service
    if argv[0] == "dispatcher":
        server = service.DispatchServer(service.DispatcherConfig(port=0))
        address = server.target.split("://", 1)[-1]
    else:
        server = service.WorkerServer(service.WorkerConfig(dispatcher_address=argv[1], port=0))
        address = f"worker of {argv[1]}"
    print(f"ready {address}", flush=True)
    server.join()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv[1:]))
