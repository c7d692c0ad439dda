"""The main job's summary of asv's log: each n/a reason once, failed benchmarks by name."""

from feedbench import cli
from feedbench.report import run_log

LOG = """\
· Running 6 total benchmarks (1 commits * 2 environments * 3 benchmarks)
[ 0.00%] ·· Benchmarking virtualenv-py3.11-keras3.12.4
[ 8.33%] ··· Setting up suite.benchmarks:195                                 ok
[ 8.33%] ··· determinism.Stream.track_problem_missing                        ok
[ 8.33%] ···· For parameters: 'generator', 1, True
              asv: skipped: NotImplementedError('generator is a generator: no workers')
              For parameters: 'generator', 2, True
              asv: skipped: NotImplementedError('generator is a generator: no workers')
[16.67%] ··· ...rminism.Stream.track_problem_aliased_batches                 failed
[25.00%] ··· shm.Targets.track_copy_vs_keyed_processes                       n/a
[33.00%] ··· shm.Targets.track_copy_fit_shuffle_vs_not       0.8346551985266317
[25.00%] ···· asv: skipped: NotImplementedError("quick grid: shm's targets are not measured")
[50.00%] ·· Benchmarking virtualenv-py3.11-keras3.15.1
[58.33%] ··· Setting up suite.benchmarks:133                                 failed
[66.67%] ··· determinism.Stream.track_problem_missing                        ok
[66.67%] ···· For parameters: 'generator', 2, True
              asv: skipped: NotImplementedError('generator is a generator: no workers')
"""


def test_the_summary_counts_benchmarks_per_environment_and_each_na_reason_once():
    found = run_log.summarize(LOG)
    assert len(found.statuses) == 5 and found.setup_failed == ("suite.benchmarks:133",)
    assert found.failed == ["...rminism.Stream.track_problem_aliased_batches (virtualenv-py3.11-keras3.12.4)"]
    assert found.skipped == {"generator is a generator: no workers": 3, "quick grid: shm's targets are not measured": 1}
    said = run_log.lines(found, ".asv/run.log")
    assert said[0].startswith("feedbench: 5 benchmarks ran: 3 ok, 1 failed, 1 n/a; 4 parameter combinations n/a")
    assert sum("generator is a generator" in line for line in said) == 1  # once, not per parameter
    assert said[-1] == "  the full asv log: .asv/run.log"


def test_the_progress_filter_of_the_main_job_shows_one_line_per_benchmark(tmp_path):
    import re
    import subprocess
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "benchmarks" / "run.sh").read_text()
    pattern = re.search(r"grep --line-buffered -E '([^']+)'", script)[1]
    shown = subprocess.run(["grep", "-E", pattern], input=LOG, capture_output=True, text=True).stdout.splitlines()
    benchmarks = [line for line in shown if "Benchmarking" not in line]
    assert len(benchmarks) == len(run_log.summarize(LOG).statuses) == 5  # no tables, no n/a reasons
    assert sum("Benchmarking" in line for line in shown) == 2


def test_a_clean_log_says_nothing_failed():
    clean = "\n".join(line for line in LOG.splitlines() if "failed" not in line)
    assert run_log.summarize(clean).failed == [] and not run_log.summarize(clean).setup_failed


def test_a_log_that_is_not_there_is_one_line(tmp_path, capsys):
    missing = tmp_path / "run.log"
    assert cli.main(["report", str(tmp_path), "--log", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and repr(str(missing)) in err and "expected asv run's output" in err
