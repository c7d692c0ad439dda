"""The FEEDBENCH_* settings: parsed in one module, read once by an entry point, in force below it."""

import dataclasses
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from feedbench import cli
from feedbench.core import child, settings

ROOT = Path(__file__).resolve().parents[1]
# Where a process starts: each reads the environment once (a child is given the parent's record).
PROCESS_ENTRY_POINTS = {"src/feedbench/core/child.py", "benchmarks/_grid.py"}
# Where a call starts: each puts the settings in force for everything below it.
CALL_ENTRY_POINTS = {"src/feedbench/cli.py", "src/feedbench/api.py", "src/feedbench/core/child.py"}


def test_defaults_and_parsed_values():
    assert settings.read({}) == settings.Settings()
    parsed = settings.read(
        {"FEEDBENCH_STALL_S": "2.5", "FEEDBENCH_FORK_TRIES": "1", "FEEDBENCH_PLUGINS": " a=m:f, b=m:g ,"}
    )
    assert (parsed.stall_s, parsed.fork_tries, parsed.plugins) == (2.5, 1, ("a=m:f", "b=m:g"))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("FEEDBENCH_STALL_S", "soon", "a number of seconds"),
        ("FEEDBENCH_FORK_TRIES", "0", "a whole number"),
        ("FEEDBENCH_SHM_HAND_OFF", "yes", "one of auto, on, off"),
        ("FEEDBENCH_GRID", "huge", "full or quick"),
    ],
)
def test_a_bad_value_is_one_line_naming_it_and_what_was_expected(name, value, expected):
    with pytest.raises(ValueError) as raised:
        settings.read({name: value})
    said = str(raised.value)
    assert f"{name}={value!r} given" in said and expected in said and "\n" not in said


def test_what_an_entry_point_applied_holds_for_its_call_in_every_thread(monkeypatch):
    monkeypatch.setenv("FEEDBENCH_STALL_S", "3")
    with settings.applied(settings.read()):
        monkeypatch.setenv("FEEDBENCH_STALL_S", "7")  # changed mid-call: not seen until the next call
        seen = []
        thread = threading.Thread(target=lambda: seen.append(settings.current().stall_s))
        thread.start()
        thread.join()
        assert (settings.current().stall_s, seen) == (3.0, [3.0])
    assert settings.current().stall_s == 7.0  # no entry point above: the environment, now


def test_blocks_that_overlap_in_threads_each_take_their_own_settings_out(monkeypatch):
    monkeypatch.setenv("FEEDBENCH_STALL_S", "9")
    first, second = settings.read({"FEEDBENCH_STALL_S": "1"}), settings.read({"FEEDBENCH_STALL_S": "2"})
    entered, leave_first, seen = threading.Event(), threading.Event(), []

    def first_call():
        with settings.applied(first):
            entered.set()
            leave_first.wait(10)

    thread = threading.Thread(target=first_call)
    thread.start()
    entered.wait(10)
    with settings.applied(second):
        leave_first.set()
        thread.join(10)  # the first call ends while the second still runs
        seen.append(settings.current().stall_s)
    seen.append(settings.current().stall_s)
    assert seen == [2.0, 9.0]  # the second's own, then the environment: nothing left in force


def test_a_child_process_is_given_the_settings_in_force_not_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FEEDBENCH_STALL_S", "9")
    monkeypatch.setenv("FEEDBENCH_CACHE", str(tmp_path))
    options = settings.read({"FEEDBENCH_STALL_S": "2.5", "FEEDBENCH_PLUGINS": "a=m:f,b=m:g", "FEEDBENCH_TF_LOGS": "1"})
    with settings.applied(options):
        env = child.child_env({"KERAS_BACKEND": "jax"})
    assert env["KERAS_BACKEND"] == "jax" and "FEEDBENCH_CACHE" not in env  # in force: the default cache
    assert settings.read(env) == dataclasses.replace(options, child_of=os.getpid())


def test_every_setting_survives_the_trip_to_a_child():
    changed = settings.Settings(
        grid="quick",
        implementations=("keyed", "shm"),
        plugins=("x=m:f",),
        stall_s=5.0,
        stuck_grace_s=2.5,
        fork_tries=1,
        cache="relative/cache",
        tf_logs=True,
        shm_start_method="spawn",
        shm_hand_off="off",
        tfdata_service="localhost:5050",
        device="gpu",
        child_of=42,
    )
    default = settings.Settings()
    at_default = [f for f in settings.Settings.__dataclass_fields__ if getattr(changed, f) == getattr(default, f)]
    assert at_default == []  # every field away from its default, so each one is carried
    assert settings.read(settings.environ(changed)) == changed
    assert settings.environ(settings.Settings()) == {}


def test_only_the_settings_module_reads_the_environment_and_only_entry_points_call_read():
    for path in sorted([*ROOT.glob("src/feedbench/**/*.py"), *ROOT.glob("benchmarks/*.py")]):
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if relative != "src/feedbench/core/settings.py":
            assert not re.search(r"(environ\.get|getenv)\(\s*[\"']FEEDBENCH_", text), relative
            assert not re.search(r"environ\[\s*[\"']FEEDBENCH_", text), relative
        if "settings.read(" in text:
            assert relative in PROCESS_ENTRY_POINTS, f"{relative} reads the settings; ask settings.current()"
        if "settings.applied(" in text:
            assert relative in CALL_ENTRY_POINTS, f"{relative} applies settings; only an entry point does"
    for relative in CALL_ENTRY_POINTS:
        assert "settings.applied(" in (ROOT / relative).read_text(encoding="utf-8"), relative


def test_the_command_line_refuses_a_bad_setting_before_running_anything(monkeypatch, capsys):
    monkeypatch.setenv("FEEDBENCH_STUCK_GRACE_S", "-1")
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["feedbench: FEEDBENCH_STUCK_GRACE_S='-1' given; expected a number of seconds, 0 or more"]


def test_the_command_says_it_in_one_line_with_status_2():
    env = dict(os.environ, FEEDBENCH_FORK_TRIES="many")
    done = subprocess.run(
        [sys.executable, "-m", "feedbench.cli", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "feedbench: FEEDBENCH_FORK_TRIES='many' given; expected a whole number, 1 or more"
