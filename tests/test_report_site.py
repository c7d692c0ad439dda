"""``feedbench report``: a page from asv's results directory, checked in headless Chromium.

The results are written in asv's own format (two machines, one with two commits, a planted
determinism problem, a setting that failed to run and one that does not apply); the page is
opened in a real browser: the DOM must hold both machines side by side, the named problem and the
plots, and a screenshot must show red exactly where a problem was planted.
"""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feedbench.report import site

pytestmark = [pytest.mark.browser]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ["keyed", "numpy_global"]
WORKERS = [1, 2]
MP = [False, True]
RED = np.array([0xD9, 0x30, 0x25]) / 255  # td.problem's background


def _suite_param_names() -> dict[str, list[str]]:
    """benchmark class -> its parameter names, as the suite's keys record them (tests/asv_result_keys.json)."""
    keys = json.loads(Path(ROOT, "tests", "asv_result_keys.json").read_text())
    return {key.rsplit(".", 1)[0]: entry["param_names"] for key, entry in keys.items() if entry["param_names"]}


PARAM_NAMES = _suite_param_names()


def _list_benchmarks(results_root, keys):
    """asv's benchmarks.json beside the results, naming each benchmark's parameters."""
    path = results_root / "benchmarks.json"
    listed = json.loads(path.read_text()) if path.exists() else {}
    for key in keys:
        listed.setdefault(key, {})["param_names"] = PARAM_NAMES.get(key.rsplit(".", 1)[0], [])
    path.write_text(json.dumps(listed))


def _result_file(folder, machine, cores, backend, commit, date, figures, keras=None):
    """One asv results file (format version 2) and the machine.json beside it; ``keras``: the release
    of a matrix over Keras (asv.keras.conf.json), in its parameters and its environment's name."""
    folder.mkdir(parents=True, exist_ok=True)
    _list_benchmarks(folder, figures)
    folder = folder / machine
    folder.mkdir(parents=True, exist_ok=True)
    described = {"arch": "x86_64", "cpu": "test cpu", "machine": machine, "num_cpu": str(cores)}
    described |= {"os": "Linux", "ram": "1"}
    (folder / "machine.json").write_text(json.dumps({**described, "version": 1}))
    env_name = f"virtualenv-py3.11-{backend}" + (f"-keras{keras}" if keras else "")
    results = {}
    for key, (axes, values, *stats) in figures.items():
        results[key] = [values, [[repr(v) for v in axis] for axis in axes], None, date, 1.0, *stats]
    data = {
        "commit_hash": commit,
        "env_name": env_name,
        "date": date,
        "params": {
            **described,
            "python": "3.11",
            **({"keras": keras} if keras else {}),
        },
        "python": "3.11",
        "requirements": {},
        "env_vars": {"KERAS_BACKEND": backend},
        "result_columns": ["result", "params", "version", "started_at", "duration"]
        + ["stats_ci_99_a", "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples"],
        "results": results,
        "durations": {},
        "version": 2,
    }
    (folder / f"{commit[:8]}-{env_name}.json").write_text(json.dumps(data))


def _figures(planted_problem: bool, speed: float, counts: bool = False):
    """A run's figures; ``counts``: determinism as tracked before its flags (older results)."""
    det_axes = [IMPLS, WORKERS, MP]
    n = len(IMPLS) * len(WORKERS) * len(MP)
    zeros = [0.0] * n
    missing = list(zeros)
    if planted_problem:
        # numpy_global, 2 processes: 12 samples missing (a count), or the check's flag
        missing[IMPLS.index("numpy_global") * 4 + 1 * 2 + 1] = 12.0 if counts else 1.0
    repeat = list(zeros)
    repeat[0 * 4 + 1 * 2 + 0] = None  # keyed, 2 threads: the benchmark raised (failed to run)
    frozen = list(zeros)
    frozen[0] = math.nan  # keyed, serial: n/a for this figure only
    # keyed, 1 process: a frozen fraction high but within chance (profile counts no problem): green.
    # Its flag follows profile's verdict, so it is 0.
    frozen[1] = 0.3 if counts else 0.0
    problems = [1.0 if m else 0.0 for m in missing]
    problems[2] = None  # the failed setting
    tput_axes = [IMPLS, ["copy"], WORKERS, MP, ["small"]]
    names = ("missing", "duplicated", "batches_differing_from_repeat", "frozen_fraction")
    if not counts:
        names = ("problem_missing", "problem_duplicated", "problem_reproducible", "problem_epoch_diversity")
    return {
        **{f"determinism.Stream.track_{n}": (det_axes, v) for n, v in zip(names, (missing, zeros, repeat, frozen))},
        "determinism.Stream.track_problems": (det_axes, problems),
        "throughput.Throughput.track_epoch_samples_per_s": (tput_axes, [speed * (i + 1) for i in range(n)]),
        "memory.TreeMemory.track_added_tree_pss": (
            [IMPLS, WORKERS, MP, ["small"]],
            [2.0**20 * (100 + i) for i in range(n)],
        ),
        "training.Training.track_fit_over_ceiling": ([IMPLS, [1], [False], ["cpu"]], [0.9, 0.6]),
    }


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    _result_file(folder, "cpu-box", 2, "tensorflow", "a" * 40, 1000, _figures(False, 1000.0))
    _result_file(folder, "cpu-box", 2, "tensorflow", "b" * 40, 2000, _figures(True, 700.0))  # 30 % slower
    _result_file(folder, "gpu-box", 16, "torch", "c" * 40, 1500, _figures(False, 5000.0))
    return folder


def test_parameters_are_named_as_asv_lists_them_and_a_figure_no_longer_listed_by_its_class(results):
    listed = json.loads((results / "benchmarks.json").read_text())
    del listed["throughput.Throughput.track_epoch_samples_per_s"]  # tracked before, gone from the suite
    listed["throughput.Throughput.track_first_batch_s"] = {"param_names": PARAM_NAMES["throughput.Throughput"]}
    (results / "benchmarks.json").write_text(json.dumps(listed))
    newest = site.load(str(results))[("cpu-box", "tensorflow")][-1]
    memory = next(iter(newest.figures["memory.TreeMemory.track_added_tree_pss"]))
    assert memory._fields == tuple(PARAM_NAMES["memory.TreeMemory"]) and memory.size == "small"
    older = next(iter(newest.figures["throughput.Throughput.track_epoch_samples_per_s"]))
    assert (older.workload, older.workers, older.size) == ("copy", 1, "small")  # the class's 5 names
    assert [title for title, _ in site._throughput_plots(newest)] == ["throughput, copy workload, small source"]


def test_the_names_the_report_falls_back_on_are_the_suites():
    assert {name: list(names) for name, names in site.SUITE_PARAM_NAMES.items()} == PARAM_NAMES


def test_results_copied_without_benchmarks_json_are_judged_by_the_suites_names(results):
    listed = site.load(str(results))
    (results / "benchmarks.json").unlink()
    unlisted = site.load(str(results))
    for column, runs in listed.items():
        assert site.verdicts(unlisted[column][-1]) == site.verdicts(runs[-1]) != {}
    assert site._throughput_plots(unlisted[("cpu-box", "tensorflow")][-1])


def test_the_report_reads_asv_results_and_judges_each_cell(results):
    groups = site.load(str(results))
    assert set(groups) == {("cpu-box", "tensorflow"), ("gpu-box", "torch")}
    newest = groups[("cpu-box", "tensorflow")][-1]
    cells = site.verdicts(newest)
    assert cells[("numpy_global", 2, True)] == ("problem", "missing samples")
    assert cells[("keyed", 2, False)][0] == "failed"
    assert cells[("keyed", 1, False)] == ("ok", "no problem found")
    assert cells[("keyed", 1, True)] == ("ok", "no problem found")  # a frozen fraction profile judged chance
    assert site.verdicts(groups[("gpu-box", "torch")][-1])[("numpy_global", 2, True)][0] == "ok"
    moved = site.changes(*groups[("cpu-box", "tensorflow")])
    tput = [m for m in moved if m.figure == "throughput.Throughput.track_epoch_samples_per_s"]
    assert len(tput) == 8 and all(m.worse for m in tput)  # 30 % fewer samples/s: worse
    # a check that passed and fails now (0 -> 1) is listed, as worse
    flag = ("determinism.Stream.track_problem_missing", ("numpy_global", 2, True), 0.0, 1.0, True)
    assert flag in moved


def test_older_results_that_tracked_counts_are_judged_as_before(tmp_path):
    folder = tmp_path / "results"
    _result_file(folder, "cpu-box", 2, "tensorflow", "a" * 40, 1000, _figures(True, 1000.0, counts=True))
    cells = site.verdicts(site.load(str(folder))[("cpu-box", "tensorflow")][-1])
    assert cells[("numpy_global", 2, True)] == ("problem", "missing samples")
    assert cells[("keyed", 2, False)][0] == "failed"
    assert cells[("keyed", 1, True)] == ("ok", "no problem found")  # 0.3 frozen, but profile judged chance
    assert cells[("numpy_global", 1, False)] == ("ok", "no problem found")


def test_a_frozen_share_without_the_count_of_problems_is_named_by_its_share(tmp_path):
    folder = tmp_path / "results"
    figures = _figures(False, 1000.0, counts=True)
    del figures["determinism.Stream.track_problems"]
    _result_file(folder, "cpu-box", 2, "tensorflow", "a" * 40, 1000, figures)
    cells = site.verdicts(site.load(str(folder))[("cpu-box", "tensorflow")][-1])
    assert cells[("keyed", 1, True)] == ("problem", site.FROZEN_BY_SHARE)
    assert cells[("keyed", 2, True)] == ("ok", "no problem found")


def test_starvation_is_read_off_the_tracked_ratio_and_off_older_results(results):
    newest = site.load(str(results))[("cpu-box", "tensorflow")][-1]
    page = site._starvation_html(newest)
    assert "<td>0.10</td>" in page and "<td>0.40</td>" in page  # 1 - 0.9, 1 - 0.6
    params = next(iter(newest.figures["training.Training.track_fit_over_ceiling"]))
    setting = params._replace(implementation="keyed", workers=1, use_multiprocessing=False, device="cpu")
    older = dataclasses.replace(newest, figures={"training.Training.track_starvation": {setting: 0.25}})
    assert "<td>0.25</td>" in site._starvation_html(older)


def test_a_leak_the_soak_found_reddens_its_cell_and_a_clean_soak_keeps_it_green(tmp_path):
    folder = tmp_path / "results"
    figures = _figures(False, 1000.0)
    leak_axes = [IMPLS, WORKERS, MP, ["small", "large"]]
    threads = [0.0] * 16
    threads[IMPLS.index("keyed") * 8 + 0 * 4 + 0 * 2 + 1] = 1.0  # keyed, serial, large source
    figures["memory.TreeMemory.track_problem_leaked_threads"] = (leak_axes, threads)
    figures["memory.TreeMemory.track_problem_leaked_files"] = (leak_axes, [0.0] * 16)
    _result_file(folder, "cpu-box", 2, "tensorflow", "a" * 40, 1000, figures)
    cells = site.verdicts(site.load(str(folder))[("cpu-box", "tensorflow")][-1])
    assert cells[("keyed", 1, False)] == ("problem", "leaks threads")
    assert cells[("keyed", 1, True)] == ("ok", "no problem found")
    assert cells[("numpy_global", 1, False)] == ("ok", "no problem found")


def test_starvation_is_never_shown_below_zero_and_within_its_interval_is_noise(results):
    newest = site.load(str(results))[("cpu-box", "tensorflow")][-1]
    key = "training.Training.track_fit_over_ceiling"
    setting = next(iter(newest.figures[key]))._replace(
        implementation="keyed", workers=1, use_multiprocessing=False, device="cpu"
    )
    above = dataclasses.replace(newest, figures={key: {setting: 1.2}}, stats={})
    page = site._starvation_html(above)
    assert site.NOT_STARVED in page and "-0.20" not in page  # fit above its ceiling: noise, not a finding
    # a starvation of 0.3 whose interval (of the seeds' ratios: 0.5 to 1.05) reaches 0
    wide = {setting: ({"ci_99_a": 0.5, "ci_99_b": 1.05}, None)}
    noisy = dataclasses.replace(newest, figures={key: {setting: 0.7}}, stats={key: wide})
    assert site.NOT_STARVED in site._starvation_html(noisy)
    narrow = {setting: ({"ci_99_a": 0.65, "ci_99_b": 0.75}, None)}
    starved = dataclasses.replace(newest, figures={key: {setting: 0.7}}, stats={key: narrow})
    assert "<td>0.30 [0.25, 0.35]</td>" in site._starvation_html(starved)


def test_the_page_shows_both_machines_and_a_planted_red_cell_is_red(results, tmp_path, chromium):
    import matplotlib.image

    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "report", str(results), "--out", str(out)]
        + ["--screenshot", str(tmp_path / "report.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out / "index.html"
    dom = chromium.dom(page.as_uri())
    assert dom.count('class="column"') == 5 * 2  # five sections, two machines side by side in each
    assert 'data-machine="cpu-box"' in dom and 'data-machine="gpu-box"' in dom
    assert dom.count('class="problem"') == 1 and "missing samples" in dom
    assert dom.count('class="failed"') == 2  # keyed, 2 threads, on each machine
    assert dom.count("data:image/png;base64,") == 2 * 2  # throughput and memory plots per machine
    assert "figures moved by more than 10%" in dom and 'class="worse"' in dom

    shot = tmp_path / "report.png"  # feedbench report --screenshot took it
    pixels = matplotlib.image.imread(str(shot))[:, :, :3]
    red = np.all(np.abs(pixels - RED) < 0.03, axis=2)
    assert red.sum() > 200  # the planted cell is drawn red

    # Both ways: without the planted problem no cell is red.
    clean = tmp_path / "clean"
    _result_file(clean, "cpu-box", 2, "tensorflow", "d" * 40, 3000, _figures(False, 1000.0))
    site.write(str(clean), str(tmp_path / "clean-report"))
    shot = chromium.screenshot(
        (tmp_path / "clean-report" / "index.html").as_uri(), tmp_path / "clean.png", size=(1600, 1400)
    )
    pixels = matplotlib.image.imread(str(shot))[:, :, :3]
    assert np.all(np.abs(pixels - RED) < 0.03, axis=2).sum() == 0


def test_a_missing_results_folder_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "report", str(tmp_path / "nowhere")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "asv results folder" in proc.stderr and "Traceback" not in proc.stderr


def test_the_direction_of_a_change_is_the_figures_own():
    assert site.higher_is_better("throughput.Throughput.track_epoch_samples_per_s")
    assert site.higher_is_better("determinism.Stream.track_epoch_diversity")
    assert not site.higher_is_better("determinism.Stream.track_problem_epoch_diversity")  # a flag: 1 failed
    assert site.higher_is_better("shm.Targets.track_copy_vs_best_threads")
    assert not site.higher_is_better("training.Training.track_starvation_vs_arrays")
    assert site.higher_is_better("training.Training.track_fit_over_ceiling")
    assert site.higher_is_better("throughput.Throughput.track_epoch_samples_per_s_vs_reference")
    assert not site.higher_is_better("shm.Targets.track_workers_uss_over_budget")
    assert not site.higher_is_better("training.Training.track_val_accuracy_spread")
    assert not site.higher_is_better("memory.TreeMemory.track_peak_tree_uss")
    assert not site.higher_is_better("memory.TreeMemory.track_added_tree_pss")


def test_two_runs_are_compared_figure_by_figure_as_asv_compare_does(results):
    older, newer = site.load(str(results))[("cpu-box", "tensorflow")]
    found = site.agreement(older, newer, 1.1)
    moved = {(key, params) for key, params, *_ in found.moved}
    speed = "throughput.Throughput.track_epoch_samples_per_s"
    missing = "determinism.Stream.track_problem_missing"
    assert {k for k, _ in moved} == {speed, missing, "determinism.Stream.track_problems"}
    assert sum(1 for k, _ in moved if k == speed) == 8  # 30 % slower: every setting
    assert (missing, ("numpy_global", 2, True)) in moved  # the check passed, then failed
    # figures that failed in both runs (keyed, 2 threads) or are n/a are not figures
    assert ("determinism.Stream.track_problem_reproducible", ("keyed", 2, False)) not in moved
    assert found.compared["memory.TreeMemory"] == 8 and found.failed_once == []
    assert site.agreement(older, newer, 1.5).moved == [m for m in found.moved if m[0] != speed]
    lines = site.agreement_lines(found)
    assert lines[0].startswith("cpu-box") and f"{found.within} of " in lines[0] and "within 1.1x" in lines[0]


def _timed(mean, low, high, samples):
    """A time_ figure of two parameter settings with asv's statistics: (axes, values, ci_a, ci_b,
    q_25, q_75, number, repeat, samples), as asv stores them."""
    n = 2
    stats = [[low] * n, [high] * n, [low] * n, [high] * n, [1] * n, [len(samples)] * n, [samples] * n]
    return ([["a", "b"]], [mean] * n, *stats)


def test_a_figure_with_asv_statistics_moves_only_where_they_say_it_differs(tmp_path):
    noisy = {"throughput.EpochTime.time_epoch": _timed(1.0, 0.8, 1.3, [0.8, 0.9, 1.0, 1.2, 1.3])}
    still_noisy = {"throughput.EpochTime.time_epoch": _timed(1.15, 0.9, 1.4, [0.9, 1.1, 1.15, 1.3, 1.4])}
    far = {"throughput.EpochTime.time_epoch": _timed(2.0, 1.9, 2.1, [1.9, 1.95, 2.0, 2.05, 2.1])}
    for name, figures in (("a", noisy), ("b", still_noisy), ("c", far)):
        _result_file(tmp_path / name, "box", 2, "tensorflow", name * 40, 1000, noisy)
        _result_file(tmp_path / name, "box", 2, "tensorflow", "f" * 40, 2000, figures)
    assert site.agreement(*site.load(str(tmp_path / "a"))[("box", "tensorflow")]).moved == []
    # 15 % slower by the value, but the spreads overlap: asv compare would not flag it either
    overlapping = site.load(str(tmp_path / "b"))[("box", "tensorflow")]
    assert overlapping[1].stats["throughput.EpochTime.time_epoch"][("a",)][0]["repeat"] == 5
    assert site.agreement(*overlapping).moved == [] and site.changes(*overlapping) == []
    # twice as slow, spreads apart: moved, in both settings
    apart = site.load(str(tmp_path / "c"))[("box", "tensorflow")]
    assert len(site.agreement(*apart).moved) == 2 and len(site.changes(*apart)) == 2


def test_agreement_on_the_command_line(results):
    def report(*args):
        return subprocess.run(
            [sys.executable, "-m", "feedbench.cli", "report", str(results), "--agreement", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = report()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cpu-box" in proc.stdout and "gpu-box" not in proc.stdout  # one commit there: nothing to compare
    proc = report("--factor", "0.9")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "feedbench: factor 0.9 given; expected a number above 1 (1.1: a 10 % change)"
    )


def test_a_reader_that_goes_away_ends_the_command_quietly(results):
    """`feedbench report --agreement | head -1`: the reader is gone before the rest is written. A
    Unix tool ends there without a word (status 128 + SIGPIPE); it used to print a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "feedbench.cli", "report", str(results), "--agreement"],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr[-2000:]
    assert proc.stderr == ""


def test_a_matrix_over_keras_releases_gets_a_column_each_and_a_record_of_what_changed(tmp_path):
    folder = tmp_path / "results"
    for date, (release, problem, speed) in enumerate(
        [("3.15.1", True, 700.0), ("3.9.2", False, 1000.0), ("3.12.4", False, 1000.0)]
    ):
        _result_file(folder, "cpu-box", 2, "tensorflow", "d" * 40, 1000 + date, _figures(problem, speed), release)
    groups = site.load(str(folder))
    order = [key[1] for key in sorted(groups, key=site.column_order)]
    assert order == ["tensorflow, Keras 3.9.2", "tensorflow, Keras 3.12.4", "tensorflow, Keras 3.15.1"]
    out = tmp_path / "releases.md"
    status = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "report", str(folder), "--out", str(tmp_path / "page")]
        + ["--releases", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    text = out.read_text()
    assert text.index("| setting | Keras 3.9.2 | Keras 3.12.4 | Keras 3.15.1 |") > 0
    assert "**Keras 3.9.2 to 3.12.4**: nothing moved" in text
    moved = text.split("**Keras 3.12.4 to 3.15.1**")[1]
    # the planted flaw and the 30 % slower throughput, named as worse; nothing else of that figure
    assert "determinism.Stream.track_problem_missing('numpy_global', 2, True): 0 to 1 (worse)" in moved
    assert (
        "throughput.Throughput.track_epoch_samples_per_s('keyed', 'copy', 1, False, 'small'): 1000 to 700 (worse)"
        in moved
    )
    assert "numpy_global, 2 processes | no problem found | no problem found | missing samples |" in text


def test_releases_without_a_keras_matrix_is_one_line(results, tmp_path):
    status = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "report", str(results), "--out", str(tmp_path / "page")]
        + ["--releases", str(tmp_path / "releases.md")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 2 and "no results of a matrix over Keras releases" in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1, status.stderr


def test_budgets_time_each_run_from_asv_and_count_what_ran_failed_or_was_na(results, tmp_path):
    from feedbench import cli
    from feedbench.report import budgets

    newer = next((results / "cpu-box").glob("bbbbbbbb-*.json"))
    data = json.loads(newer.read_text())
    started, took = data["result_columns"].index("started_at"), data["result_columns"].index("duration")
    names = sorted(data["results"])
    t0 = 1_800_000_000_000  # ms, as asv stores it
    for i, name in enumerate(names):  # one benchmark every 10 s, each 5 s long
        data["results"][name][started], data["results"][name][took] = t0 + 10_000 * i, 5.0
    data["durations"] = {"<setup_cache suite.benchmarks:1>": 30.0, "<setup_cache shm:2>": 4.0, "<build>": 12.0}
    newer.write_text(json.dumps(data))
    # the first benchmark reads the 30 s setup_cache, which asv runs just before it
    listed = json.loads((results / "benchmarks.json").read_text())
    listed[names[0]]["setup_cache_key"] = "suite.benchmarks:1"
    listed["shm.Targets.track_x"] = {"setup_cache_key": "shm:2"}
    (results / "benchmarks.json").write_text(json.dumps(listed))
    page = budgets.page(str(results))
    cpu = page.split("## cpu-box")[1].split("## ")[0]
    span = 30 + 10 * (len(names) - 1) + 5
    assert f"**{span // 60} min {span % 60} s**" in cpu and "building and installing the commit: 0 min 12 s" in cpu
    assert [budgets._minutes(s) for s in (59.6, 3599.5, 3659.6)] == ["1 min 0 s", "60 min 0 s", "61 min 0 s"]
    assert f"{names[0].rsplit('.', 1)[0]} 30 s, shm.Targets 4 s" in cpu
    assert "1 n/a" in cpu and "2 failed" in cpu  # keyed serial's frozen share; keyed with 2 threads, twice
    assert "agreement with the run before: aaaaaaaa -> bbbbbbbb" in cpu and "moved" in cpu  # 30 % slower
    assert "one run of this machine" in page.split("## gpu-box")[1]
    out = tmp_path / "budgets.md"
    assert cli.main(["report", str(results), "--out", str(tmp_path / "site"), "--budgets", str(out)]) == 0
    assert out.read_text() == page
