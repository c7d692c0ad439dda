"""The loaders people pick instead (torch DataLoader, Grain, the tf.data service), measured like
the others: the same keyed batches, the verdicts true, nothing of theirs left running."""

import importlib.util
from dataclasses import replace

import numpy as np
import psutil
import pytest

from feedbench.fit import driver
from feedbench.generators import Spec, build
from feedbench.generators.keying import KeyedBatches
from feedbench.generators.registry import BUILTINS, Implementation
from feedbench.measure.determinism import measure_determinism
from feedbench.measure.setting import Context, measure_setting

pytestmark = [pytest.mark.slow]


def _needs(package):
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"{package} is not installed")


PEERS = [pytest.param("torch_dataloader", marks=_needs("torch")), pytest.param("grain", marks=_needs("grain"))]


def _server_processes():
    """This test's servers (another run on the machine may have its own)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "feedbench.generators.tfdata_service_server" in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.parametrize("impl", PEERS)
@pytest.mark.parametrize("workers,processes", [(1, False), (2, True)])
def test_a_peer_delivers_keyeds_batch_for_each_key(impl, workers, processes, no_stray_workers):
    spec = Spec(impl, n_samples=96, batch_size=16, shuffle=True, workers=workers, use_multiprocessing=processes)
    built = build(spec)
    try:
        batches = driver.run(built, epochs=2, timeout_s=120)
    finally:
        built.close()
    assert built.applied() == {"workers": workers, "use_multiprocessing": processes}
    keyed = KeyedBatches(built.source, spec.batch_size, spec.seed, spec.shuffle, spec.work)
    per_epoch = spec.batches_per_epoch
    assert len(batches) == 2 * per_epoch
    for i, batch in enumerate(batches):
        x, y = keyed(*divmod(i, per_epoch))
        np.testing.assert_array_equal(np.asarray(batch.y), y)
        np.testing.assert_allclose(np.asarray(batch.x), x)


@pytest.mark.parametrize("impl", PEERS)
def test_a_peer_passes_the_determinism_checks(impl):
    spec = Spec(impl, n_samples=128, batch_size=16, shuffle=True, workers=2, use_multiprocessing=True)
    result = measure_determinism(spec, epochs=2, timeout_s=120)
    assert result.problems() == [], result
    assert result.matches_serial is True and result.reproducible is True


def _stream(spec):
    built = build(spec)
    try:
        return driver.run(built, epochs=2, timeout_s=180)
    finally:
        built.close()


@pytest.mark.long  # the long tier: a dispatcher and two servers start
def test_tfdata_service_runs_a_dispatcher_and_two_worker_servers_and_leaves_none():
    spec = Spec("tfdata_service", n_samples=128, batch_size=16, shuffle=True, workers=2, use_multiprocessing=True)
    before = {p.pid for p in _server_processes()}
    built = build(spec)
    try:
        servers = [p for p in _server_processes() if p.pid not in before]
        roles = sorted(" ".join(p.cmdline()).split("tfdata_service_server ", 1)[1].split()[0] for p in servers)
        assert roles == ["dispatcher", "worker", "worker"]  # each a process of its own
        assert all(p.pid != psutil.Process().pid for p in servers)
        batches = driver.run(built, epochs=2, timeout_s=180)
    finally:
        built.close()
    _, alive = psutil.wait_procs(servers, timeout=10)
    assert not alive and {p.pid for p in _server_processes()} <= before
    # Whichever server made a batch, it is the batch its number gives: the one server's run
    # (numbers in order) holds the same batch for the same rows, bit for bit.
    reference = {tuple(np.asarray(b.y)[:, 1]): np.asarray(b.x) for b in _stream(replace(spec, workers=1))}
    assert len(batches) == 2 * spec.batches_per_epoch
    compared = 0
    for batch in batches:
        rows = tuple(np.asarray(batch.y)[:, 1])  # shuffled: the rows name the batch number
        if rows in reference:  # (a batch from past the reference's two epochs may arrive early)
            np.testing.assert_array_equal(np.asarray(batch.x), reference[rows])
            compared += 1
    assert compared >= len(batches) // 2


@pytest.mark.long  # the long tier: every check on a dispatcher and two servers
def test_tfdata_service_determinism_verdicts_are_true():
    one = measure_determinism(
        Spec("tfdata_service", n_samples=128, batch_size=16, shuffle=True), epochs=2, timeout_s=180
    )
    assert one.problems() == [], one  # one server: numbers in order, every batch keyed
    two = measure_determinism(
        Spec("tfdata_service", n_samples=128, batch_size=16, workers=2, use_multiprocessing=True),
        epochs=2,
        timeout_s=180,
    )
    # Two servers race, so order and epoch boundaries may move; the batches themselves never
    # change and the source is never written: only order-made problems may be named.
    assert set(two.problems()) <= {"reproducible", "matches_serial", "in_order", "missing", "duplicated"}, two
    assert two.source_intact is True and not two.repeated_draws


def test_a_missing_package_makes_the_setting_na_not_failed(monkeypatch):
    ghost = Implementation(
        "ghost_loader",
        "torch_dataloader",
        "needs a package that is not there",
        "feedbench.generators.keyed:build",
        needs=("feedbench_no_such_package",),
    )
    monkeypatch.setitem(BUILTINS, "ghost_loader", ghost)
    result = measure_setting(Spec("ghost_loader"), ("throughput",), Context(epochs=1, timeout_s=60))
    assert result.error is None and "feedbench_no_such_package" in result.skipped and "pip install" in result.skipped
