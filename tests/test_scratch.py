"""Private temporary folders (core/scratch.py) and the stop guard (core/stop_guard.py), unit by unit.

The end-to-end checks (nothing new in the temporary folder after drive, a SIGKILLed command's
folder removed by the next, signals while the main thread waits in native code) are in
tests/test_faults.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from feedbench.core import scratch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_folder_is_removed_only_once_nobody_holds_it(tmp_path):
    held_path, held = scratch._make()
    loose_path, loose = scratch._make()
    os.close(loose)  # as a SIGKILLed maker: the kernel dropped its lock
    try:
        removed = scratch.remove_abandoned(os.path.dirname(held_path))
        assert os.path.basename(loose_path) in removed and not os.path.exists(loose_path)
        assert os.path.basename(held_path) not in removed and os.path.isdir(held_path)
        not_ours = tmp_path / f"{scratch.PREFIX}1-x"  # no lock file: never touched
        not_ours.mkdir()
        assert scratch.remove_abandoned(str(tmp_path)) == [] and not_ours.is_dir()
    finally:
        scratch._remove(held_path, held)


def test_a_forked_child_leaving_does_not_remove_its_parents_folder():
    proc = _python(
        """
        import os, tempfile
        from feedbench.core import scratch
        path = scratch.use_private_folder()
        pid = os.fork()
        if pid == 0:
            scratch.remove_private_folders()  # as atexit or a finally would, in a fork that exits normally
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.path.isdir(path), tempfile.gettempdir() == path)
        scratch.remove_private_folders()
        print(os.path.isdir(path), os.environ.get("TMPDIR") != path)
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "False", "True"], proc.stdout


def test_the_stop_guard_ignores_the_signals_a_pool_sends_its_own_workers():
    """Forked workers inherit the wake-up fd: the SIGTERM a pool's terminate() sends each one, and
    without the at-fork reset the guard took those for a stop of the command itself. A plain fork
    stands for the pool: CPython's Pool.terminate() itself hung now and then on a loaded machine
    (3 of 40 tries beside two CPU burners, with or without the guard)."""
    proc = _python(
        """
        import os, signal, time
        from feedbench.core import stop_guard
        PARENT = os.getpid()
        def stop(signum, frame):
            if os.getpid() != PARENT:
                os._exit(143)
            raise SystemExit(143)
        signal.signal(signal.SIGTERM, stop)  # a handler of the command's, inherited by workers
        stop_guard.install(lambda signum: ("feedbench: the guard fired", 143), grace_s=0.5)
        worker = os.fork()
        if worker == 0:
            time.sleep(60)
            os._exit(0)
        time.sleep(0.5)
        os.kill(worker, signal.SIGTERM)  # as a pool's terminate() does
        os.waitpid(worker, 0)
        time.sleep(2.0)  # past the guard's grace
        print("still running")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "still running", (proc.returncode, proc.stderr[-2000:])


def test_the_stop_guard_ends_a_process_the_signal_did_not_end():
    """Its own grace, then the guard's line and status: here the handler returns without ending the
    process (in the command line, a main thread in native code never runs it)."""
    proc = _python(
        """
        import os, signal, threading
        from feedbench.core import stop_guard
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        stop_guard.install(lambda signum: (f"feedbench: ended by the guard ({signum})", 128 + signum), grace_s=0.5)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        threading.Event().wait(60)
        print("not ended")
        """
    )
    assert proc.returncode == 143, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1] == "feedbench: ended by the guard (15)"


def test_a_process_keeps_one_private_folder():
    """Nested private folders lengthen every path under them: a UNIX socket's (asv's forkserver,
    multiprocessing's) holds 107 bytes, and asv failed to start its server two levels down."""
    proc = _python(
        """
        from feedbench.core import scratch
        first = scratch.use_private_folder()
        print(scratch.use_private_folder() == first)
        scratch.remove_private_folders()
        """
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["True"], proc.stderr[-2000:]


def test_removing_the_folder_before_exit_leaves_multiprocessing_nothing_to_trip_on():
    """multiprocessing's exit finalizer removes its pymp-* folder; removed before it (the tests'
    pytest_unconfigure, the command line's way out), it printed a FileNotFoundError traceback."""
    proc = _python(
        """
        import multiprocessing, os
        from feedbench.core import scratch
        path = scratch.use_private_folder()
        with multiprocessing.get_context("fork").Pool(1) as pool:
            pool.map(abs, [1])
        from multiprocessing import util
        print(util.get_temp_dir().startswith(path + os.sep))
        scratch.remove_private_folders()
        print(os.path.isdir(path))
        """
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "False"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
