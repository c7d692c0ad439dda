"""The Python API: feedbench.profile on a factory, a path and an object; its displays."""

import json
import os

import pytest

import feedbench
from feedbench.api import ApiError
from support import api_factories

pytestmark = [pytest.mark.slow]

SMALL = {"samples": 96, "batch_size": 16, "epochs": 2, "timeout_s": 60}


def test_a_factory_taking_x_and_y_is_profiled_traced():
    said = []
    result = feedbench.profile(
        api_factories.traced, workers=(1, 2), use_multiprocessing=(True,), progress=said.append, **SMALL
    )
    assert result.mode == "traced" and len(result.results) == 2 and not result.failures
    assert result.problems == {}
    assert all(r.determinism.identified_by == "traced ids" for r in result.results)
    assert len(said) == 2 and said[0].startswith("[1/2] workers=1 mp=on")
    data = json.loads(json.dumps(result.to_json()))
    assert data["mode"] == "traced" and data["provenance"]["versions"]["keras"]
    assert "mode: traced" in str(result)


def test_a_factory_on_its_own_data_gets_the_checks_that_need_no_ids():
    result = feedbench.profile(api_factories.own_data, workers=(1,), use_multiprocessing=(False,), **SMALL)
    assert result.mode == "own data"
    only = result.results[0]
    assert only.determinism.identical_batches == 2  # batch 1 repeats batch 0, in each of 2 epochs
    assert result.problems == {"identical_batches": ["workers=1 mp=off"]}
    assert only.determinism.missing is None and "own data" in only.null_reasons["determinism.missing"]
    assert only.determinism.reproducible is True


@pytest.mark.long  # the long tier: CI profiles a path from the command line
def test_a_path_is_profiled_like_the_command_line():
    result = feedbench.profile(
        "support.corpus:classic", workers=(1,), use_multiprocessing=(False,), **{**SMALL, "samples": 100}
    )
    assert set(result.problems) == {"never_delivered"}


def test_a_dataset_object_is_measured_as_built_and_says_so():
    result = feedbench.profile(api_factories.dataset_object(), workers=(1, 2), **SMALL)
    assert len(result.results) == 1 and result.results[0].error is None
    assert "grid not applied" in result.note and result.mode == "own data"


def test_what_cannot_reach_a_child_process_is_refused_with_what_to_pass():
    def local_factory(workers=1):
        return None

    with pytest.raises(ApiError, match="defined in a function; settings run in child processes"):
        feedbench.profile(local_factory)
    with pytest.raises(ApiError, match="a generator object cannot be sent to a measuring process"):
        feedbench.profile(x for x in range(3))
    with pytest.raises(ApiError, match=r"workers=\[0, -1\] given"):
        feedbench.profile("support.corpus:classic", workers=[0, -1])


def test_the_notebook_display_renders_in_a_browser(tmp_path, chromium):
    result = feedbench.profile(api_factories.own_data, workers=(1,), use_multiprocessing=(False,), **SMALL)
    page = tmp_path / "profile.html"
    page.write_text(f"<html><body>{result._repr_html_()}</body></html>")
    figure = result.plot()
    assert len(figure.axes) == 2 and figure.axes[0].get_xlabel() == "workers"
    dom = chromium.dom(page.as_uri())
    assert "feedbench-profile" in dom and "<table>" in dom and "identical" in dom
    assert 'style="background:#fdd"' in dom  # the setting with a problem is marked red
    assert os.path.getsize(page) > 0
