"""The documents hold to the code: the generated pages are what `feedbench docs` writes now, every
``FEEDBENCH_*`` variable the code reads is declared once, and nothing points outside the repository."""

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from feedbench import cli
from feedbench.core.settings import BY_NAME, SETTINGS
from feedbench.report import reference

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "feedbench"


@pytest.mark.parametrize("name", ["reference.md", "layout.md"])
def test_the_checked_in_page_is_what_feedbench_docs_writes(name):
    written = reference.pages(cli._parser(), PACKAGE)[name]
    assert (ROOT / "docs" / name).read_text(encoding="utf-8") == written, f"docs/{name} is stale: run feedbench docs"


def test_the_reference_names_every_command_and_option_and_setting():
    page = reference.commands_page(cli._parser())
    for command, sub in reference._subcommands(cli._parser()).items():
        assert f"## feedbench {command}\n" in page
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in page, (command, flag)
    for setting in SETTINGS:
        assert f"`{setting.name}`" in page


def test_docs_check_fails_on_a_stale_page_and_writes_nothing(tmp_path, capsys):
    assert cli.main(["docs", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "layout.md"
    stale.write_text(stale.read_text() + "a line the code does not say\n")
    before = stale.read_text()
    assert cli.main(["docs", "--out", str(tmp_path), "--check"]) == 1
    assert "feedbench: layout.md in " in capsys.readouterr().err and stale.read_text() == before
    assert cli.main(["docs", "--out", str(tmp_path / "missing")]) == 2


def _tracked(*patterns):
    listed = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in listed.stdout.splitlines() if (ROOT / line).is_file()]


def test_every_feedbench_variable_the_code_names_is_declared_once_and_each_declared_one_is_read():
    named = set()
    for path in _tracked("src/*.py", "benchmarks/*", "src/**/*.py"):
        named |= set(re.findall(r"FEEDBENCH_[A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    assert named - set(BY_NAME) == set(), "declare these in feedbench.core.settings.SETTINGS"
    assert set(BY_NAME) - named == set(), "declared but read nowhere"
    assert len(BY_NAME) == len(SETTINGS)


def test_nothing_in_the_repository_points_outside_it():
    outside = [
        str(p.relative_to(ROOT))
        for p in _tracked()
        if p.suffix in {".md", ".py", ".sh", ".toml", ".json", ".cfg"}
        and "../" + "shared" in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert outside == []


def test_comments_in_the_code_and_tests_are_two_lines_at_most():
    """A longer rationale is a named NOTE in a docstring, pointed to by name."""
    long_ones = []
    for path in _tracked("src/**/*.py", "benchmarks/*.py", "tests/**/*.py"):
        run = 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            run = run + 1 if line.lstrip().startswith("#") and not line.startswith("#!") else 0
            if run == 3:
                long_ones.append(f"{path.relative_to(ROOT)}:{number - 2}")
    assert long_ones == []
