"""`feedbench profile`: the grid, the table, the verdicts, the JSON, and bad generators."""

import json

import pytest  # noqa: E402

from feedbench.cli import main
from feedbench.core import procs
from feedbench.measure.determinism import DeterminismFigures
from feedbench.measure.memory import MemoryFigures
from feedbench.measure.setting import SCHEMA_VERSION, SettingResult

pytestmark = [pytest.mark.slow]

SMALL = ["--samples", "96", "--batch-size", "16", "--epochs", "3"]


def test_profile_writes_every_figure_and_verdicts(tmp_path, capsys):
    out = tmp_path / "p.json"
    code = main(
        [
            "profile",
            "support.planted:global_numpy_rng",
            *SMALL,
            "--grid-workers",
            "1",
            "2",
            "--grid-multiprocessing",
            "on",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "different batches received the identical random augmentation" in text
    assert "why: forked workers inherit one NumPy/TensorFlow RNG state" in text
    data = json.loads(out.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    records = data["settings"]
    assert [(r["workers"], r["use_multiprocessing"]) for r in records] == [(1, True), (2, True)]
    for record in records:
        assert set(record["throughput"]) >= {"first_batch_s", "samples_per_s", "latency_p50_s", "latency_p95_s"}
        assert set(record["memory"]) == set(MemoryFigures.__dataclass_fields__)
        assert set(record["determinism"]) == set(DeterminismFigures.__dataclass_fields__)
        assert SettingResult.from_json(record).to_json() == record  # the JSON reads back as it was written
        assert record["memory"]["workers_seen"] >= 3 * record["workers"]  # a new pool every epoch
    one, two = records
    # Two forked workers start from one RNG state: their batches repeat each other's draws.
    assert two["determinism"]["repeated_draws"] > 0
    # One worker draws a single stream, but every epoch's new fork restarts it: frozen.
    assert one["determinism"]["repeated_draws"] == 0 and one["determinism"]["epoch_diversity"] == 0


@pytest.mark.long  # the long tier: a whole profile
def test_null_figures_come_with_a_reason(tmp_path):
    out = tmp_path / "p.json"
    main(
        [
            "profile",
            "support.planted:plain_generator",
            "--samples",
            "64",
            "--batch-size",
            "16",
            "--epochs",
            "2",
            "--grid-workers",
            "1",
            "--grid-multiprocessing",
            "off",
            "--json",
            str(out),
        ]
    )
    record = json.loads(out.read_text())["settings"][0]
    assert record["memory"]["growth_memory_main_bytes"] is None and record["memory"]["leaks"] is None
    assert "--soak" in record["null_reasons"]["memory.growth_memory_main_bytes"]


def test_failing_settings_are_reported_and_the_rest_go_on(tmp_path, capsys):
    before = procs.descendant_pids()
    out = tmp_path / "p.json"
    code = main(
        [
            "profile",
            "support.planted:raising",
            *SMALL,
            "--grid-workers",
            "1",
            "2",
            "--grid-multiprocessing",
            "both",
            "--json",
            str(out),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    failures = [line for line in captured.out.splitlines() if "FAILED" in line]
    assert len(failures) == 4 and all("planted failure at index 3" in line for line in failures)
    # Nothing was measured, so nothing is declared clean.
    assert "no determinism problem found" not in captured.out
    assert "no determinism verdict: no setting was measured" in captured.out
    assert len(json.loads(out.read_text())["settings"]) == 4
    procs.assert_no_new_workers(before)


def test_a_hanging_generator_fails_its_setting_at_the_time_limit(capsys):
    before = procs.descendant_pids()
    code = main(
        [
            "profile",
            "support.planted:hanging",
            *SMALL,
            "--grid-workers",
            "2",
            "--grid-multiprocessing",
            "on",
            "--timeout",
            "3",
        ]
    )
    assert code == 1
    assert "exceeded its time limit of 3 s" in capsys.readouterr().out
    procs.assert_no_new_workers(before)


@pytest.mark.long  # the long tier: CI checks the skip reasons with drive
def test_settings_that_do_not_apply_are_skipped_with_the_reason(capsys):
    code = main(
        [
            "profile",
            "generator",
            "--samples",
            "64",
            "--batch-size",
            "16",
            "--epochs",
            "3",
            "--grid-workers",
            "1",
            "2",
            "--grid-multiprocessing",
            "off",
        ]
    )
    assert code == 0
    assert "workers=2 mp=False: skipped, Keras 3 feeds a Python generator serially" in capsys.readouterr().out


def test_unknown_implementation_fails_before_any_setting(capsys):
    assert main(["profile", "nope"]) == 2


def test_fail_on_problems_gates_on_a_determinism_problem(tmp_path):
    args = [
        "profile",
        "support.planted:global_numpy_rng",
        *SMALL,
        "--grid-workers",
        "2",
        "--grid-multiprocessing",
        "on",
    ]
    out = tmp_path / "p.json"
    assert main([*args, "--fail-on", "problems", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["grid"] == [{"workers": 2, "use_multiprocessing": True}] and "workers" not in data["spec"]
    assert data["provenance"]["versions"]["keras"] and data["provenance"]["python"]
    assert data["settings"][0]["problems"]
