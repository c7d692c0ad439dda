import numpy as np
import pytest

from feedbench.core.errors import BadDataset, PluginError, UnknownImplementation
from feedbench.fit import driver
from feedbench.generators import BUILTINS, Spec, build, get, registry
from feedbench.generators.registry import ENTRY_POINT_GROUP

STABLE_NAMES = {"seed_unseeded", "seed_reseeded", "seed_bounded", "keyed", "generator", "tfdata", "tfdata_pyfunc"}


def test_builtin_names_are_stable():
    assert STABLE_NAMES <= set(BUILTINS)


def test_unknown_implementation_names_what_exists():
    with pytest.raises(UnknownImplementation, match="unknown implementation 'kyed'; expected one of .*keyed"):
        get("kyed")


@pytest.mark.parametrize(
    "path,message",
    [
        ("no_such_module_xyz:factory", "module 'no_such_module_xyz' does not import"),
        ("support.planted:missing_factory", "has no attribute 'missing_factory'"),
        ("support.planted:NOT_CALLABLE", "'NOT_CALLABLE' is a int, expected a callable"),
        ("planted", "expected 'package.module:callable'"),
    ],
)
def test_bad_plugin_paths_say_what_is_wrong(path, message):
    with pytest.raises(PluginError, match=message):
        build(Spec("p"), plugins=[f"p={path}"])


def test_factory_returning_something_else_is_refused():
    with pytest.raises(BadDataset, match="returned a dict; expected a keras.utils.PyDataset"):
        build(Spec("support.planted:not_a_dataset"))


def test_dataset_of_length_zero_is_refused():
    with pytest.raises(BadDataset, match="length 0; expected at least one batch"):
        build(Spec("support.planted:empty"))


def test_plugin_from_the_command_option_joins_and_runs():
    table = registry(["mine=support.planted:plain_generator"])
    assert "mine" in table and table["mine"].plugin
    built = build(Spec("mine", n_samples=40, batch_size=16), plugins=["mine=support.planted:plain_generator"])
    assert built.family == "generator"
    batches = driver.run(built, epochs=2)
    assert [len(b.x) for b in batches] == [16, 16, 8] * 2


def test_plugin_from_the_environment(monkeypatch):
    monkeypatch.setenv("FEEDBENCH_PLUGINS", "support.planted:plain_generator, other=support.planted:raising")
    table = registry()
    assert {"plain_generator", "other"} <= set(table)
    assert table["other"].factory == "support.planted:raising"


def test_plugin_from_an_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "mygen-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mygen\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfrom_ep = support.planted:plain_generator\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry()["from_ep"].factory == "support.planted:plain_generator"
    built = build(Spec("from_ep", n_samples=32, batch_size=16))
    assert len(driver.run(built, epochs=1)) == 2


def test_plugin_cannot_take_a_builtin_name():
    with pytest.raises(PluginError, match="'keyed' .* is taken by a built-in"):
        registry(["keyed=support.planted:plain_generator"])


def test_plugin_pydataset_is_fed_with_its_parallel_settings(no_stray_workers):
    built = build(Spec("support.planted:raising", n_samples=32, batch_size=16, workers=2, use_multiprocessing=True))
    assert built.family == "pydataset" and built.dataset.workers == 2 and built.dataset.use_multiprocessing
    assert len(driver.run(built, epochs=1)) == 2  # two batches: index 3 is never reached
    assert np.array_equal(driver.run(built, epochs=1)[0].y[:, 1], np.arange(16))
