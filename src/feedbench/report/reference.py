"""Reference pages written from the code, so they cannot drift from it (``feedbench docs``).

- ``docs/reference.md``: every command and option, from the command line's own argparse parsers,
  and every ``FEEDBENCH_*`` setting, from ``feedbench.core.settings``;
- ``docs/layout.md``: the packages and modules, from their docstrings, floor by floor.

A test writes both and fails where the checked-in page differs.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from feedbench.core.settings import SETTINGS

GENERATED = "<!-- Written by `feedbench docs` from the code; edit the code, then run it. -->"
# The layers, ground floor first, as the import contract in pyproject.toml orders them.
LAYERS = ("core", "generators", "fit", "measure", "run", "report", "suite")
FACES = ("api.py", "cli.py")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    shown = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
    if isinstance(shown, tuple):
        shown = " ".join(shown)
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        shown = "{" + ",".join(str(choice) for choice in action.choices) + "}"
    if action.nargs in ("+", "*") and shown:
        shown += " ..."
    return ", ".join(f"`{flag}{' ' + shown if shown and action.nargs != 0 else ''}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    if not action.option_strings or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        return ""
    value = action.default
    if isinstance(value, (list, tuple)):
        value = " ".join(str(item) for item in value)
    return f"`{value}`" if value != "" else ""


def _cell(text: str | None) -> str:
    return " ".join((text or "").replace("|", "\\|").split())


def commands_page(parser: argparse.ArgumentParser) -> str:
    """Markdown: the top-level usage, then a section per command with its options."""
    lines = [
        "# Command and settings reference",
        "",
        GENERATED,
        "",
        f"`{parser.prog}`: {parser.description}",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    commands = _subcommands(parser)
    for name, sub in commands.items():
        lines.append(f"| [`{name}`](#feedbench-{name}) | {_cell(sub.description)} |")
    lines += [
        "",
        "Bad input ends with one line on stderr and exit status 2; a run that fails (the generator",
        "raised, timed out, a worker died) exits 1; a data path stuck in native code past its limit, 124.",
    ]
    for name, sub in commands.items():
        lines += ["", f"## feedbench {name}", "", _cell(sub.description), ""]
        if sub.epilog:
            lines += [f"Example: `{sub.epilog.removeprefix('example: ')}`", ""]
        lines += ["| option | default | meaning |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            lines.append(f"| {_flags(action)} | {_default(action)} | {_cell(action.help)} |")
    lines += [
        "",
        "## Settings (environment variables)",
        "",
        "Read once when a command, a `feedbench.profile` call or a measuring process starts (never at",
        "import; a bad value stops it with one line). *user*: set it yourself; *suite*: the asv scripts",
        "set it; *internal*: feedbench sets it for its own child processes.",
        "",
        "| variable | default | who | meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        lines.append(f"| `{setting.name}` | {_cell(setting.default)} | {setting.audience} | {_cell(setting.meaning)} |")
    return "\n".join(lines) + "\n"


def _summary(path: Path) -> str:
    """A module's docstring, its first paragraph on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def layout_page(package: Path) -> str:
    """Markdown: the layers floor by floor, each with its docstring and a line per module."""
    lines = [
        "# Layout",
        "",
        GENERATED,
        "",
        "The package is a house of layers; each imports only the ones below it (import-linter checks",
        "the contract in `pyproject.toml` in CI). From the top floor down:",
        "",
    ]
    for face in FACES:
        lines.append(f"- `src/feedbench/{face}`: {_summary(package / face)}")
    for layer in reversed(LAYERS):
        folder = package / layer
        lines += ["", f"## `{layer}/`", "", _summary(folder / "__init__.py"), ""]
        for module in sorted(folder.glob("*.py")):
            if module.name != "__init__.py":
                lines.append(f"- `{module.name}`: {_summary(module)}")
    lines += [
        "",
        "## Outside the package",
        "",
        "- `benchmarks/`: feedbench's own asv suite, built from `feedbench.suite` (its grid in `_grid.py`),",
        "  and the scripts that run it (`run.sh`, `keras_history.sh`, `gpu_fit.sh`).",
        "- `tests/`: pytest; generators with planted defects live in `tests/support/`, never in `src/`.",
        "- `docs/`: the pages the README links to; `reference.md` and `layout.md` are written by `feedbench docs`,",
        "  `FINDINGS.md` by `feedbench findings`, `budgets.md` by `feedbench report --budgets`.",
    ]
    return "\n".join(lines) + "\n"


def pages(parser: argparse.ArgumentParser, package: Path) -> dict[str, str]:
    """File name under docs/ -> its text."""
    return {"reference.md": commands_page(parser), "layout.md": layout_page(package)}
