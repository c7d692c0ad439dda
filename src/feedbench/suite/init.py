"""``feedbench init``: an asv suite of the user's own input pipeline, in the user's repository.

It writes ``asv.conf.json`` (the repository itself is the project asv builds at each commit) and a
``benchmarks/`` package whose modules bind feedbench's benchmark classes to the user's ``Grid``, so
the keys and statistics are feedbench's own suite's. Everything is checked before anything is
written, and the files are written all or none: nothing else the user wrote is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from feedbench.core.errors import FeedbenchError, PluginError
from feedbench.generators.registry import BUILTINS, ENTRY_POINT_GROUP, load_callable, parse_plugin

CONF = "asv.conf.json"
PACKAGE = "benchmarks"
# What each written benchmark module builds, by asv's module name: the names asv reports.
MODULES = {
    "throughput": ("EpochTime, Throughput", "throughput", "one epoch timed by asv, and samples/s over whole epochs"),
    "memory": ("TreeMemory", "memory", "what feeding adds to the process tree's memory, and leaks"),
    "determinism": ("Stream", "determinism", "one flag per determinism check of the delivered stream"),
}


class InitRefused(FeedbenchError):
    """``feedbench init`` cannot write a suite here; nothing was written."""


@dataclass(frozen=True, slots=True)
class Choices:
    """What the written suite measures.

    Attributes:
        generators: ``[name=]package.module:callable`` factories; empty: the entry points of the group
            ``feedbench.generators`` installed here.
        workers, multiprocessing: the grid's axes.
        samples, batch_size: the source each factory is given.
        traced: False when the factories feed their own data (the checks that need sample ids are n/a).
    """

    generators: tuple[str, ...] = ()
    workers: tuple[int, ...] = (1, 2)
    multiprocessing: tuple[bool, ...] = (False, True)
    samples: int = 1024
    batch_size: int = 64
    traced: bool = True


def init(folder: str, choices: Choices, force: bool = False) -> list[Path]:
    """Write the suite into the git repository at ``folder``; return the files written.

    Raises InitRefused (one line) before writing anything when the folder is not the top of a git
    repository, holds no project asv can build, already has an asv.conf.json or suite files
    (unless ``force``), or when a generator does not import.
    """
    root = _repository_top(Path(folder))
    project = _project_name(root)
    plugins, names = _generators(choices.generators)
    files = {
        root / CONF: _conf_text(root, project),
        root / PACKAGE / "__init__.py": _grid_module(plugins, names, choices),
    }
    for module, (bound, builder, says) in MODULES.items():
        files[root / PACKAGE / f"{module}.py"] = _benchmark_module(bound, builder, says)
    existing = [path for path in files if path.exists()]
    if existing and not force:
        shown = ", ".join(str(path.relative_to(root)) for path in existing)
        raise InitRefused(f"{shown} already in {root}; expected none (feedbench init --force replaces them)")
    _write_all_or_none(files)
    return list(files)


# ---------------------------------------------------------------------- checks


def _repository_top(folder: Path) -> Path:
    if not folder.is_dir():
        raise InitRefused(f"folder {str(folder)!r} given; expected an existing folder, the top of a git repository")
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise InitRefused("git is not installed; asv reads the repository's commits with it") from None
    if proc.returncode != 0:
        raise InitRefused(
            f"{str(folder.resolve())!r} is not in a git repository; expected the top of one "
            "(asv benchmarks its commits)"
        )
    top = Path(proc.stdout.strip()).resolve()
    if top != folder.resolve():
        raise InitRefused(f"{str(folder.resolve())!r} is inside the git repository {str(top)!r}; run init at its top")
    return top


def _project_name(root: Path) -> str:
    """The distribution asv builds and uninstalls at each commit: pyproject's name, else the folder's."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
        except tomllib.TOMLDecodeError as exc:
            raise InitRefused(f"{pyproject} does not parse ({exc}); expected a valid pyproject.toml") from None
        return name or root.name
    if (root / "setup.py").is_file():
        return root.name
    raise InitRefused(
        f"no pyproject.toml or setup.py in {root}; expected a Python project (asv builds it at each commit)"
    )


def _generators(given: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(plug-in texts, names measured): each given path imported here, or the installed entry points."""
    if not given:
        names = tuple(entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP))
        if not names:
            raise InitRefused(
                "no generators given and no entry points in the group "
                f"{ENTRY_POINT_GROUP!r} installed; expected package.module:callable paths"
            )
        return (), names
    plugins, names = [], []
    for text in given:
        try:
            impl = parse_plugin(text)
            load_callable(impl.factory)
        except PluginError as exc:
            raise InitRefused(f"{exc}; install your project here first (pip install -e .)") from None
        if impl.name in BUILTINS or impl.name in names:
            raise InitRefused(
                f"generator name {impl.name!r} given twice or taken by a built-in; use NAME=module:callable"
            )
        plugins.append(f"{impl.name}={impl.factory}")
        names.append(impl.name)
    return tuple(plugins), tuple(names)


# ---------------------------------------------------------------------- what is written


def feedbench_requirement() -> str:
    """How pip installs this feedbench into asv's environments: its folder when it was installed from
    one (a checkout, editable or not), else its released version."""
    dist = metadata.distribution("feedbench")
    direct = dist.read_text("direct_url.json")
    if direct:
        url = json.loads(direct).get("url", "")
        if url.startswith("file://"):
            return f"feedbench @ {url}"
    return f"feedbench=={dist.version}"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _branch(root: Path) -> str:
    proc = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip() or "main"


def _conf_text(root: Path, project: str) -> str:
    # TensorFlow and Keras pinned to what runs here: installed once per environment; each commit
    # installs this feedbench and the project's wheel.
    requirements = {name: [version] for name in ("tensorflow", "keras") if (version := _installed(name))}
    conf = {
        "version": 1,
        "project": project,
        "project_url": "",
        "repo": ".",
        "dvcs": "git",
        "branches": [_branch(root)],
        "environment_type": "virtualenv",
        "install_timeout": 1200,
        "matrix": {"req": requirements, "env": {"KERAS_BACKEND": [os.environ.get("KERAS_BACKEND", "tensorflow")]}},
        "build_command": ["python -m pip wheel --no-deps -w {build_cache_dir} {build_dir}"],
        "install_command": [
            f"in-dir={{env_dir}} python -m pip install {json.dumps(feedbench_requirement())}",
            "in-dir={env_dir} python -m pip install {wheel_file}",
        ],
        "uninstall_command": ["return-code=any python -m pip uninstall -y {project}"],
        "benchmark_dir": PACKAGE,
        "env_dir": ".asv/env",
        "results_dir": ".asv/results",
        "html_dir": ".asv/html",
        # forked from a server that imported the benchmark modules, which import no TensorFlow
        "launch_method": "forkserver",
        "default_benchmark_timeout": 600,
        # every figure flagged past 10 %, as in feedbench's own suite
        "regressions_thresholds": {".*": 0.1},
    }
    return json.dumps(conf, indent=4) + "\n"


def _grid_module(plugins: tuple[str, ...], names: tuple[str, ...], choices: Choices) -> str:
    return f'''"""This repository's input pipeline, benchmarked by feedbench under asv (written by `feedbench init`).

GRID says what is measured: the generators (plug-ins ``name=package.module:callable``, a
factory(spec, source); names without one are entry points of the group feedbench.generators) and the
workers x use_multiprocessing grid. Edit it here; throughput.py, memory.py and determinism.py build
feedbench's benchmark classes from it. The keyed generator is measured beside them as the reference
that each throughput is also divided by.
"""

from feedbench.suite.grid import Grid as _Grid

GRID = _Grid(
    implementations={names!r},
    plugins={plugins!r},
    workers={tuple(choices.workers)!r},
    multiprocessing={tuple(choices.multiprocessing)!r},
    samples={{"small": {choices.samples}}},
    batch_size={{"small": {choices.batch_size}}},
    traced={choices.traced!r},
)
'''


def _benchmark_module(bound: str, builder: str, says: str) -> str:
    return f'''"""feedbench's {builder} benchmarks of GRID: {says} (written by `feedbench init`)."""

from feedbench.suite import benchmarks as _suite

from . import GRID as _GRID

{bound} = _suite.{builder}(_GRID)
'''


def _write_all_or_none(files: dict[Path, str]) -> None:
    """Each file beside its place first, then all renamed in. Any failure puts back what was there
    (a --force replaces files) and removes what was new, folders included."""
    made_dirs = [path.parent for path in dict.fromkeys(files) if not path.parent.exists()]
    before = {path: path.read_bytes() for path in files if path.exists()}
    staged: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for folder in made_dirs:
            folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            temporary = path.with_name(f".{path.name}.feedbench-init")
            staged[temporary] = path
            temporary.write_text(text)
        for temporary, path in staged.items():
            os.replace(temporary, path)
            placed.append(path)
    except BaseException:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
        for path in placed:
            if path in before:
                path.write_bytes(before[path])
            else:
                path.unlink(missing_ok=True)
        for folder in made_dirs:
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def next_steps() -> list[str]:
    """What to run after init, as the README's "Track your own pipeline" says."""
    return [
        "asv machine --yes                       # once per machine",
        "asv run HEAD~3..HEAD                    # benchmark commits (asv continuous main HEAD compares two)",
        "asv publish && feedbench report .asv/results --out .asv/html/report --link-from .asv/html",
        "add .asv/ to .gitignore: asv keeps its environments and results there",
    ]
