"""asv result keys are a public contract: benchmark names and parameter values must not change.

``tests/asv_result_keys.json`` is the list as it stands; a change to it is deliberate and is
recorded in CHANGELOG.md (regenerate it with ``python tests/test_asv_keys.py > tests/asv_result_keys.json``).
"""

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = os.path.join(ROOT, "tests", "asv_result_keys.json")
KINDS = ("time_", "track_", "peakmem_", "mem_", "timeraw_")


def result_keys() -> dict:
    """Every benchmark as asv names it (module.Class.method), with its parameter names and values."""
    sys.path.insert(0, ROOT)
    import benchmarks

    keys = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        # asv's own rule: every public class the module holds, wherever it was defined
        # (feedbench.suite.benchmarks builds the classes the modules bind)
        for class_name, cls in vars(module).items():
            if class_name.startswith("_") or not inspect.isclass(cls):
                continue
            for method in dir(cls):
                if method.startswith(KINDS):
                    keys[f"{info.name}.{class_name}.{method}"] = {
                        "param_names": list(getattr(cls, "param_names", [])),
                        "params": [[repr(value) for value in axis] for axis in getattr(cls, "params", [])],
                    }
    return keys


def test_asv_result_keys_are_unchanged():
    # A fresh process with the full grid and the built-ins only, whatever this shell has set.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FEEDBENCH_GRID", "FEEDBENCH_IMPLEMENTATIONS", "FEEDBENCH_PLUGINS")
    }
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(STORED) as handle:
        stored = json.load(handle)
    current = json.loads(proc.stdout)
    assert sorted(current) == sorted(stored), "benchmarks added or removed: record it in CHANGELOG.md"
    for name, params in stored.items():
        assert current[name] == params, f"{name}: parameters changed; record it in CHANGELOG.md"


def test_the_benchmark_modules_import_no_tensorflow_or_keras():
    """asv forks every benchmark from a server that imported these modules (launch_method
    forkserver): TensorFlow's runtime threads or a CUDA context must not be in it."""
    check = (
        "import sys; sys.path.insert(0, '.'); import benchmarks, pkgutil, importlib\n"
        "for info in pkgutil.iter_modules(benchmarks.__path__): importlib.import_module('benchmarks.' + info.name)\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"importing the benchmark modules imported {proc.stdout.strip()}"
    with open(os.path.join(ROOT, "asv.conf.json")) as handle:
        assert '"launch_method": "forkserver"' in handle.read()


if __name__ == "__main__":
    print(json.dumps(result_keys(), indent=1, sort_keys=True))
