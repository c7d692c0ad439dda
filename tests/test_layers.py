"""The house's layers: imports point down only, checked by import-linter (contract in pyproject.toml)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")

needs_linter = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(tree: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    return subprocess.run(
        [LINT, "--config", os.path.join(tree, "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_linter
def test_the_layers_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


@needs_linter
@pytest.mark.parametrize(
    "lower,upper",
    [
        ("core/data.py", "feedbench.cli"),
        ("fit/driver.py", "feedbench.measure"),
        ("measure/memory.py", "feedbench.run.sweep"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path, lower, upper):
    tree = tmp_path / "house"
    shutil.copytree(os.path.join(ROOT, "src"), tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tree / "pyproject.toml")
    planted = tree / "src" / "feedbench" / lower
    planted.write_text(planted.read_text() + f"\nimport {upper}  # planted upward import\n")
    proc = _lint(str(tree))
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and upper in proc.stdout
