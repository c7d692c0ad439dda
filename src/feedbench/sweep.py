"""Measure many settings in a child process that a failure cannot take down.

One child measures the settings in turn (TensorFlow is imported once) and
writes a JSON line per finished setting. The parent watches the clock: a
setting that runs past its limit, or a child that dies (a data path stuck in
native code ends its process), fails that one setting with a one-line reason;
the child's whole process group is killed and a fresh child takes the rest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from feedbench.generators import Spec

MEASURES = ("throughput", "memory", "determinism")  # what profile measures
KNOWN_MEASURES = MEASURES + ("training", "fit_stream")
# Runs per setting (each under the time limit); training: per seed, and its baseline.
RUNS = {"throughput": 1, "memory": 1, "determinism": 3, "training": 2, "fit_stream": 1}
START_UP_SLACK_S = 90.0  # importing TensorFlow in a fresh process, on a busy machine


def setting_limit(measures, timeout_s: float, seeds: int = 1) -> float:
    """The most one setting may take: every run at its own limit, plus start-up."""
    runs = sum(RUNS[m] * (seeds if m == "training" else 1) for m in measures)
    return timeout_s * runs + START_UP_SLACK_S


def sweep(
    specs: list[Spec],
    measures=MEASURES,
    epochs: int = 3,
    timeout_s: float = 120.0,
    plugins=(),
    progress: Callable[[int, dict], None] | None = None,
    seeds: int = 1,
    env: dict[str, str] | None = None,
) -> list[dict]:
    """One record per spec, in order; ``progress(index, record)`` as each finishes.

    ``seeds``: how many seeds the training measure repeats over. ``env``: set
    in the measuring process before anything loads (``CUDA_VISIBLE_DEVICES``).
    """
    unknown = set(measures) - set(KNOWN_MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; expected some of {list(KNOWN_MEASURES)}")
    records: list[dict | None] = [None] * len(specs)
    remaining = list(range(len(specs)))
    limit = setting_limit(measures, timeout_s, seeds)
    options = {"measures": list(measures), "epochs": epochs, "timeout_s": timeout_s, "plugins": list(plugins),
               "seeds": seeds}
    while remaining:
        failure = _run_child(specs, remaining, options, env or {}, limit, records, progress)
        remaining = [i for i in remaining if records[i] is None]
        if failure and remaining:
            index = remaining.pop(0)  # the setting the child was on when it failed
            records[index] = failed_record(specs[index], failure)
            if progress:
                progress(index, records[index])
    return records


def _run_child(specs, indices, options, env, limit, records, progress) -> str | None:
    """Measure ``indices`` in one child, filling ``records``; the reason it stopped early, if it did."""
    with tempfile.TemporaryDirectory(prefix="feedbench-sweep-") as tmp:
        out = os.path.join(tmp, "records.jsonl")
        request = os.path.join(tmp, "request.json")
        with open(request, "w") as handle:
            json.dump({"specs": [specs[i].to_dict() for i in indices], "indices": indices, "out": out, **options},
                      handle)
        stderr_path = os.path.join(tmp, "stderr")
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "feedbench.sweep", request],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_child_env(env),
                start_new_session=True,  # its own process group, killed whole
            )
        read = 0
        last_progress = time.monotonic()
        failure = None
        try:
            while True:
                finished = proc.poll() is not None
                read, new = _read_new(out, read)
                for index, record in new:
                    records[index] = record
                    last_progress = time.monotonic()
                    if progress:
                        progress(index, record)
                if finished:
                    if any(records[i] is None for i in indices):
                        said = _last_line(stderr_path)
                        failure = f"measuring process exited with status {proc.returncode}" + (f": {said}" if said else "")
                    break
                if time.monotonic() - last_progress > limit:
                    failure = f"setting exceeded its time limit of {limit:g} s and was killed"
                    break
                time.sleep(0.1)
        finally:
            _kill_group(proc.pid)
            proc.wait()
        return failure


def _read_new(path: str, offset: int):
    if not os.path.exists(path):
        return offset, []
    with open(path) as handle:
        handle.seek(offset)
        text = handle.read()
    complete = text[: text.rfind("\n") + 1]  # a line still being written waits for the next poll
    new = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return offset + len(complete), [(item["index"], item["record"]) for item in new]


_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages)")


def _last_line(path: str) -> str | None:
    """The child's last words, skipping TensorFlow's native log lines."""
    with open(path) as handle:
        lines = [line.strip() for line in handle if line.strip() and not _NATIVE_LOG.match(line)]
    return lines[-1] if lines else None


def _child_env(extra: dict[str, str]) -> dict:
    """The child imports what this process imports: plug-ins found on our sys.path too."""
    paths = [entry or os.getcwd() for entry in sys.path]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)  # and any worker the child left behind
    except (ProcessLookupError, PermissionError):
        pass


def empty_record(spec: Spec) -> dict:
    return {"workers": spec.workers, "use_multiprocessing": spec.use_multiprocessing, "error": None,
            "throughput": None, "memory": None, "determinism": None, "training": None, "fit_stream": None,
            "null_reasons": {}}


def failed_record(spec: Spec, reason: str) -> dict:
    return {**empty_record(spec), "error": reason}


def _main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from feedbench.profile import measure_setting

    with open(argv[0]) as handle:
        request = json.load(handle)
    for index, spec_dict in zip(request["indices"], request["specs"]):
        record = measure_setting(Spec(**spec_dict), request["epochs"], request["timeout_s"], request["plugins"],
                                 request["measures"], request["seeds"])
        with open(request["out"], "a") as out:
            out.write(json.dumps({"index": index, "record": record}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
