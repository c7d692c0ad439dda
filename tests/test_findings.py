"""feedbench findings: verdicts follow the measurements, the report re-renders from
stored results, and the inconsistent-preprocessing claim is measured for real."""

import copy
import json
import os
import subprocess
import sys

import pytest

from feedbench.fit import training as train
from feedbench.report import findings
from feedbench.run.findings import Findings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = os.path.join(ROOT, "docs", "findings.json")


@pytest.fixture
def stored():
    with open(STORED) as handle:
        return json.load(handle)


def test_the_committed_report_is_the_rendering_of_the_committed_measurements(stored):
    with open(os.path.join(ROOT, "docs", "FINDINGS.md")) as handle:
        assert handle.read() == findings.render(Findings.from_json(stored))


def test_the_stored_measurements_read_back_into_one_record_and_write_out_unchanged(stored):
    record = findings.read(STORED)
    assert record.stream[findings.key("keyed", 2, True)].determinism is not None
    assert record.preprocessing.consistent.val_accuracy > 0
    written = record.to_json()
    assert Findings.from_json(written).to_json() == written
    assert _kept(stored, written)  # every stored value; fields newer than the file are at their defaults


def _kept(part, whole) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _kept(v, whole[k]) for k, v in part.items())
    return part == whole


def test_stored_findings_that_are_not_findings_are_one_line(tmp_path):
    wrong = tmp_path / "findings.json"
    wrong.write_text(json.dumps({"machine": "m", "colour": "red"}))
    with pytest.raises(ValueError, match=r"cannot be read .*unknown keys \['colour'\].*feedbench findings --json"):
        findings.read(str(wrong))


def _set_accuracy(results, impl, verdict, diff):
    for workers, mp in findings.SETTINGS:
        record = results["training"][findings.key(impl, workers, mp, True)]
        record["error"] = None
        record["training"] = {
            **(record.get("training") or _any_training(results)),
            "accuracy_verdict": verdict,
            "accuracy_vs_baseline": diff,
        }


def _any_training(results):
    return next(r["training"] for r in results["training"].values() if r.get("training"))


def test_verdicts_follow_the_measured_accuracy(stored):
    lowered = copy.deepcopy(stored)
    _set_accuracy(lowered, "seed_unseeded", "lower than baseline", -0.2)
    assert "**Verdict: confirmed in every setting.**" in findings.render(Findings.from_json(lowered))
    unchanged = copy.deepcopy(stored)
    _set_accuracy(unchanged, "seed_unseeded", "within seed noise", 0.0)
    assert "**Verdict: refuted: unseeded augmentation costs no accuracy beyond seed noise.**" in findings.render(
        Findings.from_json(unchanged)
    )


def test_a_lost_sample_turns_the_uneven_batch_verdict(stored):
    lost = copy.deepcopy(stored)
    lost["stream"][findings.key("seed_bounded", 1, False)]["determinism"]["missing"] = 40
    assert "**Verdict: not refuted: see the figures.**" in findings.render(Findings.from_json(lost))
    assert "missing 40" in findings.render(Findings.from_json(lost))


def test_preprocessing_only_the_training_batches_costs_accuracy(no_stray_workers):
    task = train.Task(n_train=512, n_val=256, epochs=3, band_brightness=0.3)
    spec = task.spec("keyed", workload="numpy")
    consistent = train.measure_training(spec, task.epochs, seeds=2).summary()
    inconsistent = train.measure_training(spec, task.epochs, seeds=2, preprocess_validation=False).summary()
    assert consistent.val_accuracy - inconsistent.val_accuracy > 0.1


def test_findings_from_a_file_that_is_not_stored_results_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "findings", "--from", str(bad), "--out", str(tmp_path / "F.md")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"feedbench: stored findings '{bad}' cannot be read")


def test_findings_rerenders_stored_results(tmp_path):
    out = tmp_path / "F.md"
    proc = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "findings", "--from", STORED, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(ROOT, "docs", "FINDINGS.md")) as handle:
        assert out.read_text() == handle.read()
