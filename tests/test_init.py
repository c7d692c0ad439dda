"""``feedbench init`` in a user's repository: the suite it writes finds the user's own regressions.

A throwaway git repository holds a team's package, ``trainfeed``, whose PyDataset is correct in
commit 1, twice as slow per batch in commit 2, and delivers one batch twice per epoch in commit 3.
``feedbench init`` writes the suite; asv runs it on the three commits (TensorFlow and feedbench
borrowed from this test's environment through a .pth file, as tests/test_asv_suite.py does, so
nothing large is downloaded) and ``asv compare`` must report exactly the throughput regression at
commit 2 and the duplicated-batch flag at commit 3. The published site and feedbench's report page
are opened in headless Chromium.
"""

import http.server
import json
import os
import re
import shutil
import site
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from feedbench import cli
from feedbench.core import scratch
from feedbench.suite import init

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=feedbench", "-c", "user.email=feedbench@localhost"]
PIPELINE = '''"""A team's input pipeline: its training arrays in batches, as a keras.utils.PyDataset."""

import math
import time

import keras
import numpy as np

PER_BATCH_S = 0.02  # stands in for reading and decoding a batch


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        time.sleep(PER_BATCH_S)
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return np.array(self.x[rows]), np.array(self.y[rows])


def make(spec, source):
    """feedbench's factory: the pipeline over the arrays it is given, with the settings it asks for."""
    return Batches(source.x, source.y, spec.batch_size, **spec.parallel_settings())
'''
# Commit 2: each batch costs twice as much. Commit 3 (as fast as commit 2): an epoch serves one batch
# more than the data holds, wrapping to the first batch: those samples come twice, none is missing.
SLOWER = ("time.sleep(PER_BATCH_S)", "time.sleep(2 * PER_BATCH_S)")
WRAPS = (
    ("return math.ceil(len(self.x) / self.batch_size)", "return math.ceil(len(self.x) / self.batch_size) + 1"),
    (
        "rows = slice(index * self.batch_size, (index + 1) * self.batch_size)",
        "rows = slice(index % (len(self) - 1) * self.batch_size, (index % (len(self) - 1) + 1) * self.batch_size)",
    ),
)
SAMPLES, BATCH = 1024, 32  # 32 batches: the wrapped batch adds 3 % to an epoch's time, within asv's 10 %


def end_to_end(test):
    """asv over three commits: ten minutes on two cores, so the long tier, under a time limit of its own."""
    for mark in (pytest.mark.timeout(1500), pytest.mark.slow, pytest.mark.asv, pytest.mark.long):
        test = mark(test)
    return test


def _run(cmd, cwd, env=None, timeout=900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _user_repository(folder: Path) -> Path:
    repo = folder / "trainfeed-repo"
    (repo / "trainfeed").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "trainfeed"\nversion = "0.1.0"\n'
    )
    (repo / "trainfeed" / "__init__.py").write_text("")
    pipeline = repo / "trainfeed" / "data.py"
    pipeline.write_text(PIPELINE)
    _run(["git", "init", "-q", "-b", "main"], repo)
    _run([*GIT, "add", "-A"], repo)
    _run([*GIT, "commit", "-qm", "correct pipeline"], repo)
    pipeline.write_text(pipeline.read_text().replace(*SLOWER))
    _run([*GIT, "commit", "-qam", "twice as slow per batch"], repo)
    text = pipeline.read_text()
    for old, new in WRAPS:
        assert old in text
        text = text.replace(old, new)
    pipeline.write_text(text)
    _run([*GIT, "commit", "-qam", "one batch served twice"], repo)
    return repo


def _borrowing(conf_path: Path) -> dict:
    """The written configuration as asv reads it, but TensorFlow, Keras and feedbench borrowed from
    this environment instead of installed into asv's: the rest is used as written."""
    conf = json.loads(conf_path.read_text())
    borrowed = "\n".join([site.getsitepackages()[0], str(ROOT / "src")])
    borrow = f"python -c \"import site; open(site.getsitepackages()[0] + '/borrowed.pth', 'w').write({borrowed!r})\""
    conf["matrix"].pop("req")
    conf["build_command"] = ["python -m pip wheel --no-deps --no-build-isolation -w {build_cache_dir} {build_dir}"]
    conf["install_command"] = [borrow, "in-dir={env_dir} python -m pip install --no-deps {wheel_file}"]
    conf_path.write_text(json.dumps(conf, indent=4))
    return conf


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    repo = _user_repository(tmp_path_factory.mktemp("init"))
    temp = tempfile.mkdtemp(prefix="asv-")  # short: asv's forkserver socket lives there
    env = dict(os.environ, TMPDIR=temp, PYTHONPATH=str(repo))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # TF_CPP_MIN_LOG_LEVEL left unset: the written suite must be as quiet as feedbench's on its own
    for name in ("FEEDBENCH_GRID", "FEEDBENCH_IMPLEMENTATIONS", "FEEDBENCH_PLUGINS", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(name, None)
    setup = [sys.executable, "-m", "feedbench.cli", "init", "trainfeed.data:make"]
    setup += ["--grid-workers", "1", "2", "--grid-multiprocessing", "off", "--samples", str(SAMPLES)]
    said = _run([*setup, "--batch-size", str(BATCH)], repo, env).stdout
    written_conf = json.loads((repo / "asv.conf.json").read_text())
    _borrowing(repo / "asv.conf.json")
    env.pop("PYTHONPATH")  # from here on, asv's environment has the commit's own trainfeed
    asv = [sys.executable, "-m", "asv"]
    _run([*asv, "machine", "--yes"], repo, env)
    commits = _run(["git", "rev-list", "--reverse", "main"], repo).stdout.split()
    hashes = repo.parent / "commits.txt"
    hashes.write_text("\n".join(commits) + "\n")
    proc = _run([*asv, "run", "--show-stderr", f"HASHFILE:{hashes}"], repo, env, timeout=1500)
    scratch.remove_abandoned(temp)  # asv's forkserver, killed before its normal exit (test_asv_suite)
    left = sorted(os.listdir(temp))
    shutil.rmtree(temp, ignore_errors=True)
    return repo, asv, env, commits, said, written_conf, proc.stdout + proc.stderr, left


def _changed(asv, repo, env, older, newer):
    """The benchmarks ``asv compare`` calls changed (past its 10 % and its statistics), and the rows."""
    out = _run([*asv, "compare", "--split", older, newer], repo, env).stdout
    # | -  | 287±3 | 151±2 | 0.53 | throughput.Throughput.track_epoch_samples_per_s('make', 'copy', 1, False, 'small') |
    rows = re.findall(r"^\|\s*([+-])\s*\|.*?\|\s*([\w.]+\([^)]*\))\s*\|$", out, re.M)
    return {name: sign for sign, name in rows}, out


@end_to_end
def test_init_writes_a_suite_with_the_same_keys_and_leaves_the_rest(tracked):
    repo, _, _, _, said, conf, *_ = tracked
    assert "asv run" in said and "feedbench report" in said
    assert sorted(p.name for p in (repo / "benchmarks").iterdir() if p.suffix == ".py") == [
        "__init__.py",
        "determinism.py",
        "memory.py",
        "throughput.py",
    ]
    assert conf["repo"] == "." and conf["branches"] == ["main"] and conf["project"] == "trainfeed"
    versions = {name: init._installed(name) for name in ("tensorflow", "keras")}
    assert conf["matrix"]["req"] == {name: [v] for name, v in versions.items()}
    assert any(init.feedbench_requirement() in command for command in conf["install_command"])
    # nothing the user wrote was touched: only the suite is new
    status = _run(["git", "status", "--porcelain"], repo).stdout.split("\n")
    assert sorted(line[3:] for line in status if line) == [".asv/", "asv.conf.json", "benchmarks/"]


# Rows that hold a verdict (a flag, a count of problems): they change only where a check's outcome did.
VERDICTS = ("determinism.Stream.track_problem", "memory.TreeMemory.track_problem", "memory.TreeMemory.track_workers")


def _verdicts(changed):
    return {name: sign for name, sign in changed.items() if name.startswith(VERDICTS)}


@end_to_end
def test_asv_compare_reports_exactly_the_slower_commit_and_the_duplicated_batch(tracked):
    """Verdicts are asserted exactly. Figures are asserted by direction: on a loaded machine a
    setting's spread can leave one of them within asv's statistics, and the added memory of a
    32-batch pipeline (a few MiB) moves with the allocator from run to run."""
    repo, asv, env, commits, *_, run_out, _ = tracked
    assert not re.search(r"\bfailed\b", run_out), run_out[-3000:]
    slower, out = _changed(asv, repo, env, commits[0], commits[1])
    assert _verdicts(slower) == {}, out
    throughput = {name: sign for name, sign in slower.items() if name.startswith("throughput.")}
    # asv calls a figure that fell "-" (it reads lower as better): samples/s fell, the epoch's time rose
    assert all(sign == ("+" if ".time_epoch(" in name else "-") for name, sign in throughput.items()), out
    samples_per_s = "throughput.Throughput.track_epoch_samples_per_s('make', 'copy', {}, False, 'small')"
    assert any(samples_per_s.format(w) in throughput for w in (1, 2)), out
    duplicated, out = _changed(asv, repo, env, commits[1], commits[2])
    # the wrapped batch: its samples come twice, and after the last sample, out of index order
    assert _verdicts(duplicated) == {
        f"determinism.Stream.track_problem{check}('make', {w}, False)": "+"
        for check in ("_duplicated", "_in_order", "s")
        for w in (1, 2)
    }, out


@end_to_end
def test_benchmark_processes_leave_nothing_in_the_temporary_folder(tracked):
    *_, left = tracked
    assert left == []


@end_to_end
def test_benchmark_processes_print_no_tensorflow_start_up_lines(tracked):
    """As quiet as feedbench's own suite (whose test shows these lines where asked for)."""
    from feedbench.core.quiet import is_start_up_line

    *_, run_out, _ = tracked
    start_up = [line for line in run_out.splitlines() if is_start_up_line(line.strip())]
    assert not start_up, "\n".join(start_up[:5])


@end_to_end
@pytest.mark.browser
def test_the_published_site_and_the_report_page_show_the_users_pipeline(tracked, tmp_path, chromium):
    repo, asv, env, *_ = tracked
    _run([*asv, "publish"], repo, env)
    html = repo / ".asv" / "html"
    feedbench = [sys.executable, "-m", "feedbench.cli"]
    _run([*feedbench, "offline-html", str(html)], repo, env)  # this machine has no internet
    _run([*feedbench, "report", ".asv/results", "--out", ".asv/html/report", "--link-from", ".asv/html"], repo, env)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(html), **k)  # noqa: E731
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        site_dom = chromium.dom(f"{base}/#throughput.Throughput.track_epoch_samples_per_s", wait_ms=15000)
        report_dom = chromium.dom(f"{base}/report/index.html", wait_ms=5000)
        server.shutdown()
    assert "throughput.Throughput.track_epoch_samples_per_s" in site_dom and "make" in site_dom
    assert "report/index.html" in site_dom  # the report is linked from the top of asv's index
    # the verdict matrix names the user's generator and its flaw at the newest commit
    assert "make" in report_dom and "duplicated" in report_dom, report_dom[:3000]


def test_the_written_suite_loads_in_asv_with_the_grid_asked_for(user_repo):
    """What CI runs of the above in seconds: asv discovers and checks the written suite."""
    repo = user_repo
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT / "tests"))  # api_factories
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    setup = [sys.executable, "-m", "feedbench.cli", "init", "support.api_factories:traced", "--grid-workers", "1", "3"]
    _run([*setup, "--grid-multiprocessing", "on", "--samples", "512"], repo, env)
    checked = _run([sys.executable, "-m", "asv", "check", "-E", f"existing:{sys.executable}"], repo, env)
    assert "No problems found" in checked.stdout, checked.stdout
    listed = [sys.executable, "-c", "import benchmarks, benchmarks.determinism as d; print(benchmarks.GRID, d.Stream)"]
    grid = _run(listed, repo, env).stdout
    assert "workers=(1, 3)" in grid and "multiprocessing=(True,)" in grid and "'small': 512" in grid, grid


# ---------------------------------------------------------------------------------- bad input


def _refused(capsys, argv, folder: Path):
    before = sorted(p.relative_to(folder) for p in folder.rglob("*") if ".git" not in p.parts)
    status = cli.main(["init", *argv, "--dir", str(folder)])
    err = capsys.readouterr().err
    after = sorted(p.relative_to(folder) for p in folder.rglob("*") if ".git" not in p.parts)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert after == before  # nothing half-written
    return err


@pytest.fixture
def user_repo(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mine"\nversion = "0"\n')
    _run(["git", "init", "-q", "-b", "main"], tmp_path)
    return tmp_path


def test_a_folder_outside_git_is_refused_in_one_line(capsys, tmp_path):
    err = _refused(capsys, ["support.api_factories:traced"], tmp_path)
    assert "is not in a git repository" in err and str(tmp_path) in err


def test_an_existing_configuration_is_refused_unless_forced(capsys, user_repo):
    (user_repo / "asv.conf.json").write_text("{}")
    err = _refused(capsys, ["support.api_factories:traced"], user_repo)
    assert "asv.conf.json already in" in err and "--force" in err
    assert cli.main(["init", "support.api_factories:traced", "--dir", str(user_repo), "--force"]) == 0
    assert json.loads((user_repo / "asv.conf.json").read_text())["benchmark_dir"] == "benchmarks"
    assert "implementations=('traced',)" in (user_repo / "benchmarks" / "__init__.py").read_text()


def test_a_generator_that_does_not_import_is_refused_in_one_line(capsys, user_repo):
    err = _refused(capsys, ["trainfeed_absent.data:make"], user_repo)
    assert "'trainfeed_absent.data:make'" in err and "does not import" in err
    err = _refused(capsys, ["support.api_factories:no_such_factory"], user_repo)
    assert "has no attribute 'no_such_factory'" in err


def test_a_folder_without_a_project_is_refused(capsys, user_repo):
    (user_repo / "pyproject.toml").unlink()
    err = _refused(capsys, ["support.api_factories:traced"], user_repo)
    assert "no pyproject.toml or setup.py" in err


def test_a_write_that_fails_midway_leaves_nothing(user_repo, monkeypatch):
    real_replace, calls = os.replace, []

    def failing_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(init.os, "replace", failing_second)
    with pytest.raises(OSError, match="disk full"):
        init.init(str(user_repo), init.Choices(generators=("support.api_factories:traced",)))
    assert sorted(p.name for p in user_repo.iterdir()) == [".git", "pyproject.toml"]
