"""Typed results: one schema, JSON in and out in one place, typos refused."""

import json
from dataclasses import dataclass

import pytest

from feedbench.core.records import Record
from feedbench.core.spec import Spec
from feedbench.measure.determinism import DeterminismFigures
from feedbench.measure.setting import MEASURES, SettingResult, figure_of, runs_per_setting
from feedbench.measure.throughput import ThroughputFigures


def _result() -> SettingResult:
    return SettingResult.of(
        Spec("keyed", workers=2, use_multiprocessing=True),
        throughput=ThroughputFigures(samples_per_s=1234.5, first_batch_s=0.25),
        determinism=DeterminismFigures(missing=0, reproducible=True),
        null_reasons={"determinism.in_order": "the run is shuffled"},
    )


def test_a_result_reads_back_as_it_was_written():
    result = _result()
    text = json.dumps(result.to_json())
    again = SettingResult.from_json(json.loads(text))
    assert again == result
    assert isinstance(again.throughput, ThroughputFigures) and again.throughput.samples_per_s == 1234.5
    assert again.memory is None and again.problems == []


def test_a_key_the_schema_does_not_have_is_refused():
    data = _result().to_json()
    data["determinism"]["mising"] = 3  # a typo
    with pytest.raises(ValueError, match=r"DeterminismFigures: unknown keys \['mising'\]"):
        SettingResult.from_json(data)


@dataclass
class _ByName(Record):
    results: dict[str, SettingResult]
    plain: dict[str, dict]


def test_records_kept_by_name_read_back_as_records_and_keep_refusing_typos():
    by_name = _ByName({"keyed|2|1": _result()}, {"raw": {"kept": 1}})
    again = _ByName.from_json(json.loads(json.dumps(by_name.to_json())))
    assert again == by_name and isinstance(again.results["keyed|2|1"].throughput, ThroughputFigures)
    data = by_name.to_json()
    data["results"]["keyed|2|1"]["throughput"]["samples_per_sec"] = 1.0
    with pytest.raises(ValueError, match=r"ThroughputFigures: unknown keys \['samples_per_sec'\]"):
        _ByName.from_json(data)


def test_figures_by_name_refuse_names_that_do_not_exist():
    result = _result()
    assert figure_of(result, "throughput", "samples_per_s") == 1234.5
    assert figure_of(result, "memory", "workers_seen") is None  # not measured: None, not an error
    with pytest.raises(AttributeError, match="throughput has no figure 'samples_per_sec'"):
        figure_of(result, "throughput", "samples_per_sec")
    with pytest.raises(ValueError, match="unknown measures"):
        figure_of(result, "speed", "samples_per_s")


def test_the_table_of_measures_says_what_a_setting_costs():
    assert list(MEASURES) == ["throughput", "memory", "training", "fit_stream", "step_bound", "determinism"]
    assert runs_per_setting(("step_bound",)) == 2  # the ceiling and the loader
    assert runs_per_setting(("throughput", "memory", "determinism")) == 5
    assert runs_per_setting(("training",), seeds=3) == 6
