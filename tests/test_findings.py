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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = os.path.join(ROOT, "docs", "findings.json")


@pytest.fixture
def stored():
    with open(STORED) as handle:
        return json.load(handle)


def test_the_committed_report_is_the_rendering_of_the_committed_measurements(stored):
    with open(os.path.join(ROOT, "docs", "FINDINGS.md")) as handle:
        assert handle.read() == findings.render(stored)


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
    assert "**Verdict: confirmed in every setting.**" in findings.render(lowered)
    unchanged = copy.deepcopy(stored)
    _set_accuracy(unchanged, "seed_unseeded", "within seed noise", 0.0)
    assert "**Verdict: refuted: unseeded augmentation costs no accuracy beyond seed noise.**" in findings.render(
        unchanged
    )


def test_a_lost_sample_turns_the_uneven_batch_verdict(stored):
    lost = copy.deepcopy(stored)
    lost["stream"][findings.key("seed_bounded", 1, False)]["determinism"]["missing"] = 40
    assert "**Verdict: not refuted: see the figures.**" in findings.render(lost)
    assert "missing 40" in findings.render(lost)


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
