"""The asv suite end to end: a regression between two commits is found, and the
published HTML shows our benchmarks in a real headless browser.

A throwaway git repository holds two commits of this project; the second makes
``keyed`` slower. asv builds each commit into its own virtualenv (the commit's
wheel; TensorFlow and the other dependencies are borrowed from this test's
environment through a .pth file, so nothing large is downloaded), runs the
epoch benchmark on both, and ``asv compare`` must report exactly the keyed
benchmarks as slower.
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

from feedbench.core import scratch

ROOT = Path(__file__).resolve().parent.parent
SLOWDOWN_S = 0.1  # per batch, planted in the second commit
IMPLEMENTATIONS = "keyed,generator,tfdata"  # tfdata: AutoGraph writes temporary files in the benchmark process
# The long tier as a whole (CI time): asv environments and real runs; CI runs `asv check`.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.slow, pytest.mark.asv, pytest.mark.long]


def _run(cmd, cwd, env=None, timeout=900, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _config(repo: Path) -> Path:
    """asv.conf.json for the throwaway repo: ours, but dependencies borrowed, not installed."""
    outer = site.getsitepackages()[0]
    borrow = f"python -c \"import site; open(site.getsitepackages()[0] + '/borrowed.pth', 'w').write({outer!r})\""
    config = {
        "version": 1,
        "project": "feedbench",
        "repo": ".",
        "branches": ["main"],
        "environment_type": "virtualenv",
        "matrix": {"env": {"KERAS_BACKEND": ["tensorflow"]}},
        "build_command": ["python -m pip wheel --no-deps --no-build-isolation -w {build_cache_dir} {build_dir}"],
        "install_command": [borrow, "in-dir={env_dir} python -m pip install --no-deps {wheel_file}"],
        "uninstall_command": ["return-code=any python -m pip uninstall -y {project}"],
        "benchmark_dir": "benchmarks",
        "env_dir": ".asv/env",
        "results_dir": ".asv/results",
        "html_dir": ".asv/html",
        "launch_method": "forkserver",
        "show_commit_url": "https://example.invalid/commit/",
    }
    path = repo / "asv.test.conf.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def asv_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("asv") / "repo"
    files = _run(["git", "ls-files"], ROOT).stdout.split()
    for name in files:
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git = ["git", "-c", "user.name=feedbench", "-c", "user.email=feedbench@localhost"]
    _run(["git", "init", "-q", "-b", "main"], repo)
    config = _config(repo)
    _run([*git, "add", "-A"], repo)
    _run([*git, "commit", "-qm", "base"], repo)
    keyed = repo / "src" / "feedbench" / "generators" / "keyed.py"
    text = keyed.read_text()
    marker = "        return keyed_batch("
    assert marker in text
    keyed.write_text(text.replace(marker, f"        __import__('time').sleep({SLOWDOWN_S})\n{marker}", 1))
    _run([*git, "commit", "-qam", "slow keyed"], repo)
    # asv's and the benchmarks' temporary folder, empty again after; short: asv's forkserver socket lives there
    temp = tempfile.mkdtemp(prefix="asv-")
    env = dict(
        os.environ,
        FEEDBENCH_GRID="quick",
        FEEDBENCH_IMPLEMENTATIONS=IMPLEMENTATIONS,
        TF_CPP_MIN_LOG_LEVEL="2",
        TMPDIR=temp,
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    asv = [sys.executable, "-m", "asv", "--config", str(config)]
    _run([*asv, "machine", "--yes"], repo, env)
    runs = {}
    for rev, logs in (("main~1", "1"), ("main", "0")):
        # The first commit's run lets TensorFlow's start-up lines through (FEEDBENCH_TF_LOGS=1): the
        # control showing that asv's output would carry them if the benchmarks did not hold them back.
        bench = [*asv, "run", "--show-stderr", "--bench", r"EpochTime\.time_epoch", f"{rev}^!"]
        proc = _run(bench, repo, dict(env, FEEDBENCH_TF_LOGS=logs), timeout=1200)
        runs[rev] = proc.stdout + proc.stderr
    # asv kills its forkserver 0.1 s after SIGINT: on a busy machine its folder stays until the next
    # feedbench command removes it as abandoned (its maker dead). Anything else left is a leak.
    scratch.remove_abandoned(temp)
    left = sorted(os.listdir(temp))
    shutil.rmtree(temp, ignore_errors=True)
    return repo, asv, env, runs, left


def test_asv_compare_reports_exactly_the_slowed_implementation(asv_repo):
    repo, asv, env, *_ = asv_repo
    out = _run([*asv, "compare", "--factor", "2", "--split", "main~1", "main"], repo, env).stdout
    # Rows whose Change column is "+" got slower, e.g.
    # | +  | 90.2±4ms | 1.10±0.01s | 12.21 | throughput.EpochTime.time_epoch('keyed', 1, False) |
    worse = {
        m.group(1) for m in re.finditer(r"^\|\s*\+\s*\|.*?(throughput\.EpochTime\.time_epoch\([^)]*\))", out, re.M)
    }
    expected = {f"throughput.EpochTime.time_epoch('keyed', {w}, {mp})" for w in (1, 2) for mp in (False, True)}
    assert worse == expected, out
    assert "'generator'" in out and not any("generator" in name for name in worse)


def test_benchmark_processes_leave_nothing_in_the_temporary_folder(asv_repo):
    """asv ends each benchmark process with os._exit, so TensorFlow's AutoGraph never removed its
    generated files there (tfdata's time_epoch left them in /tmp before benchmarks/_grid.py gave
    the benchmark processes a private folder)."""
    *_, left = asv_repo
    assert left == []


def test_benchmark_processes_print_no_tensorflow_start_up_lines(asv_repo):
    from feedbench.core.quiet import is_start_up_line

    *_, runs, _ = asv_repo
    start_up = {rev: [line for line in out.splitlines() if is_start_up_line(line.strip())] for rev, out in runs.items()}
    assert start_up["main~1"], "control: with FEEDBENCH_TF_LOGS=1 the lines should show\n" + runs["main~1"][-2000:]
    assert not start_up["main"], "\n".join(start_up["main"][:5])


@pytest.mark.browser
def test_published_html_shows_our_benchmarks_in_a_browser(asv_repo, tmp_path, chromium):
    repo, asv, env, *_ = asv_repo
    _run([*asv, "publish"], repo, env)
    html = repo / ".asv" / "html"
    assert (html / "index.html").exists()
    # This machine has no internet: serve asv's CDN libraries from the site itself.
    _run([sys.executable, "-m", "feedbench.cli", "offline-html", str(html)], repo, env)
    assert "https://code.jquery.com" not in (html / "index.html").read_text()

    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(html), **k)  # noqa: E731
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/#throughput.EpochTime.time_epoch"
        dom = chromium.dom(url, wait_ms=15000)
        shot = chromium.screenshot(url, tmp_path / "asv-site.png", wait_ms=15000)
        server.shutdown()
    assert "throughput.EpochTime.time_epoch" in dom
    for value in ("implementation", "workers", "use_multiprocessing", "keyed", "generator"):
        assert value in dom, value
    assert shot.exists() and shot.stat().st_size > 10_000
    keep = os.environ.get("FEEDBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(keep) / shot.name)


@pytest.mark.long  # the long tier: every benchmark class in a real asv run
def test_the_smoke_subset_of_the_suite_runs_without_a_failure(asv_repo):
    """The throughput, stream determinism and tree memory benchmarks over the quick grid, keyed's
    settings, in the environment asv built above (tfdata's path through asv is timed in it already,
    by EpochTime; its measurements are tested in test_implementations and test_peers)."""
    repo, asv, env, *_ = asv_repo
    bench = r"throughput\.|determinism\.Stream|memory\.TreeMemory"
    proc = _run(
        [*asv, "run", "--quick", "--show-stderr", "--bench", bench, "main^!"],
        repo,
        dict(env, FEEDBENCH_IMPLEMENTATIONS="keyed"),
        timeout=1200,
    )
    out = proc.stdout + proc.stderr
    ran = set(re.findall(r"((?:throughput|determinism|memory)\.\w+\.\w+)", out))
    assert {
        "throughput.Throughput.track_epoch_samples_per_s",
        "memory.TreeMemory.track_added_tree_pss",
        "determinism.Stream.track_problem_duplicated",
    } <= ran, out
    assert not re.search(r"\bfailed\b", out), out[-3000:]
    # the whole-epoch rate reaches asv with its measured epochs: asv keeps their statistics
    stored = [
        json.loads(path.read_text())
        for path in (repo / ".asv" / "results").glob("*/*.json")
        if path.name != "machine.json"
    ]
    key = "throughput.Throughput.track_epoch_samples_per_s"
    row = next(dict(zip(data["result_columns"], data["results"][key])) for data in stored if key in data["results"])
    assert any(repeat and repeat >= 2 for repeat in row["stats_repeat"]), row
