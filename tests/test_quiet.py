"""TensorFlow's start-up lines are held back in feedbench's own processes; nothing else is."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSL = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")

FAKE_TENSORFLOW = """
import os
os.write(2, b"I0000 00:00:1795649451.583297   16921 cudart_stub.cc:31] Could not find cuda drivers\\n")
os.write(2, b"E0000 00:00:1795649451.859517   16584 cuda_platform.cc:52] failed call to cuInit\\n")
os.write(2, b"a line the user must see\\n")
class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, b"W0000 00:00:1795649452.1   16584 gpu.cc:1] held back too\\n")
        return []
"""


def test_absl_start_up_lines_are_held_back_and_other_lines_pass(tmp_path):
    (tmp_path / "tensorflow.py").write_text(FAKE_TENSORFLOW)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.path.join(ROOT, 'src')}")
    env.pop("FEEDBENCH_TF_LOGS", None)
    code = "from feedbench.core.quiet import start_tensorflow_quietly as s; s(); print('done')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert proc.stderr.splitlines() == ["a line the user must see"]
    shown = subprocess.run(  # FEEDBENCH_TF_LOGS=1: nothing is held back
        [sys.executable, "-c", code + "; import tensorflow"],
        env=dict(env, FEEDBENCH_TF_LOGS="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cuInit" in shown.stderr and "a line the user must see" in shown.stderr


def test_drive_prints_no_tensorflow_start_up_lines():
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "drive", "keyed", "--samples", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [line for line in proc.stderr.splitlines() if ABSL.match(line) or "absl::InitializeLog" in line]
