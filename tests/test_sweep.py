"""The sweep survives settings that take its measuring process down."""

from feedbench import procs
from feedbench.generators import Spec
from feedbench.sweep import sweep


def test_a_dead_child_fails_one_setting_and_the_rest_are_measured():
    before = procs.descendant_pids()
    specs = [
        Spec("planted:plain", n_samples=64, batch_size=16),
        Spec("planted:ends_its_process", n_samples=64, batch_size=16),
        Spec("planted:plain", n_samples=64, batch_size=16, workers=2),
    ]
    seen = []
    records = sweep(specs, ("throughput",), epochs=2, timeout_s=30, progress=lambda i, r: seen.append(i))
    assert records[0]["error"] is None and records[0]["throughput"]["samples_per_s"] > 0
    assert "exited with status 3" in records[1]["error"]
    assert records[2]["error"] is None and records[2]["workers"] == 2
    assert records[0]["memory"] is None  # only what was asked for
    assert sorted(seen) == [0, 1, 2]
    procs.assert_no_new_workers(before)
