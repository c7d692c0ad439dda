import subprocess
import sys

import pytest

from feedbench.cli import main
from feedbench.generators import BUILTINS


def test_list_shows_every_implementation_and_plugins(capsys):
    assert main(["list", "--plugin", "mine=support.planted:plain_generator"]) == 0
    out = capsys.readouterr().out
    for name in [*BUILTINS, "mine"]:
        assert f"\n{name} " in out


def test_drive_reports_each_epoch(capsys):
    assert main(["drive", "keyed", "--epochs", "2", "--samples", "64", "--batch-size", "16", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[:3] for row in rows] == [["0", "4", "64"], ["1", "4", "64"]]


def test_drive_says_which_settings_do_not_apply(capsys):
    assert main(["drive", "tfdata", "--epochs", "1", "--samples", "32", "--workers", "2"]) == 0
    assert "note: workers does not apply" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["drive", "nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown implementation 'nonexistent'" in err
    assert main(["drive", "broken_mod_q:f"]) == 2
    assert "does not import" in capsys.readouterr().err


def test_failing_run_exits_1_with_the_reason(capsys):
    assert main(["drive", "support.planted:raising", "--samples", "80", "--batch-size", "16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("feedbench: run failed:") and "planted failure at index 3" in err


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "feedbench.cli", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "keyed" in proc.stdout


@pytest.mark.parametrize(
    "option,value", [("--timeout", "0"), ("--timeout", "-5"), ("--timeout", "nan"), ("--io-latency", "-1")]
)
def test_bad_seconds_are_refused_in_one_line(option, value, capsys):
    with pytest.raises(SystemExit) as ended:
        main(["drive", "keyed", option, value])
    assert ended.value.code == 2
    assert f"{value!r} given; expected a finite number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_repeats_are_refused_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as ended:
        main(["shm-targets", "--repeats", value])
    assert ended.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{value!r} given; expected a whole number, 1 or more" in err[-1]


def test_an_unwritable_json_path_is_refused_before_measuring(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "out.json"
    assert main(["profile", "keyed", "--json", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--json '{missing}' cannot be written" in err[0]


def test_version_and_help_with_defaults_and_an_example(capsys):
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0 and capsys.readouterr().out.startswith("feedbench ")
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    text = capsys.readouterr().out
    assert "(default: 120.0)" in text and "example: feedbench profile" in text


def test_a_plugin_named_in_the_environment_that_does_not_import_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FEEDBENCH_PLUGINS", "broken=no_such_module_here:factory")
    assert main(["list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "module 'no_such_module_here' does not import" in err[0]


def test_zero_workers_with_processes_is_refused_before_measuring(capsys):
    assert main(["profile", "keyed", "--grid-workers", "0", "--grid-multiprocessing", "on"]) == 2
    assert "workers=0 with use_multiprocessing=True given" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.long  # the long tier: CI covers own data in tests/test_api.py
def test_profile_states_its_mode_and_own_data_leaves_the_id_checks_na(capsys):
    args = ["profile", "keyed", "--samples", "96", "--batch-size", "16", "--epochs", "2", "--grid-workers", "1"]
    assert main([*args, "--grid-multiprocessing", "off", "--own-data"]) == 0
    out = capsys.readouterr().out
    assert "mode: own data" in out
    assert main([*args, "--grid-multiprocessing", "off"]) == 0
    assert "mode: traced" in capsys.readouterr().out


SWALLOWED_STOP = """
import signal, sys, time
from feedbench import cli
signal.signal(signal.SIGTERM, cli._on_terminate)
if sys.argv[1] == "hooked":
    sys.unraisablehook = cli._redeliver_swallowed_stops


class Destroyed:
    def __del__(self):  # where TensorFlow's Executor.__del__ once caught a SIGTERM
        raise cli._Terminated(signal.SIGTERM)


try:
    Destroyed()
    time.sleep(10)
    print("ran on")
except cli._Terminated as exc:
    print("stopped by", exc)
"""


@pytest.mark.parametrize("hooked,said", [("hooked", "stopped by SIGTERM"), ("bare", "ran on")])
def test_a_stop_swallowed_by_a_destructor_is_delivered_again(hooked, said):
    proc = subprocess.run([sys.executable, "-c", SWALLOWED_STOP, hooked], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == said, proc.stderr[-2000:]


def test_fit_shuffle_and_python_iters_reach_the_spec(capsys):
    from feedbench import cli

    args = cli._parser().parse_args(["fit", "shm", "--fit-shuffle", "on", "--python-iters", "12000"])
    spec = cli._spec_from(args)
    assert spec.fit_shuffle is True and spec.work.python_iters == 12000
    assert cli._spec_from(cli._parser().parse_args(["drive", "keyed", "--fit-shuffle", "off"])).fit_shuffle is False
    assert cli._spec_from(cli._parser().parse_args(["drive", "keyed"])).fit_shuffle is None  # the impl's choice
    with pytest.raises(SystemExit) as ended:
        main(["drive", "keyed", "--python-iters", "0"])
    assert ended.value.code == 2 and "'0' given; expected a whole number, 1 or more" in capsys.readouterr().err


def test_fit_builds_its_settings_with_fit_shuffle_and_python_iters(monkeypatch):
    from feedbench.run import sweep

    class Measured(Exception):
        pass

    def record(specs, *args, **kwargs):
        record.specs = specs
        raise Measured

    monkeypatch.setattr(sweep, "sweep", record)
    with pytest.raises(Measured):
        main(["fit", "shm", "--fit-shuffle", "on", "--python-iters", "7", "--grid-workers", "2"])
    assert {(s.fit_shuffle, s.python_iters, s.workers) for s in record.specs} == {(True, 7, 2)}


@pytest.mark.parametrize(("given", "expected"), [("3", "7 or more"), ("x", "7 or more")])
def test_a_soak_too_short_to_judge_is_refused_in_one_line(given, expected, capsys):
    from feedbench.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["profile", "keyed", "--soak", given])
    assert ended.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and f"'{given}' given" in said[0] and expected in said[0]
