"""Children armed by anycell.childproc: no Python between fork and exec, and no orphan when the parent dies."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys

from anycell.childproc import guarded_argv


def test_a_module_runs_in_the_guarded_child_with_its_arguments() -> None:
    argv = guarded_argv([sys.executable, "-m", "json.tool", "--sort-keys"])
    assert argv[:5] == [sys.executable, "-m", "anycell.childproc", str(os.getpid()), "-m"]
    out = subprocess.run(argv, input='{"b": 1, "a": 2}', capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.index('"a"') < out.stdout.index('"b"')


def test_another_program_is_execed_after_the_signal_is_armed() -> None:
    out = subprocess.run(guarded_argv(["sh", "-c", "echo $0 $1", "x", "y"]), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["x", "y"], out


def test_a_child_whose_parent_already_died_does_not_start() -> None:
    """The parent pid on the command line is not the child's parent: it exits at once, running nothing."""
    marker = "should-not-run"
    argv = [sys.executable, "-m", "anycell.childproc", "1", "--exec", "echo", marker]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and marker not in out.stdout


@pytest.mark.slow
def test_readiness_wait_gives_up_on_a_stuck_child_not_on_a_busy_one() -> None:
    import time

    from anycell.childproc import ReadinessWait

    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<30: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wb, wi = ReadinessWait(busy.pid, idle_timeout=2.0), ReadinessWait(idle.pid, idle_timeout=2.0)
        deadline = time.monotonic() + 20
        why_idle = None
        while why_idle is None and time.monotonic() < deadline:
            assert wb.expired() is None, "a child that works is not stuck"
            why_idle = wi.expired()
            time.sleep(0.05)
        assert why_idle is not None and "stuck" in why_idle
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()


def test_a_process_watched_by_pid_is_seen_alive_then_gone_even_as_an_unreaped_zombie() -> None:
    """ProcessById: what the agent has of the simulated machines ``anycell up`` started."""
    from anycell.childproc import ProcessById, running

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watched = ProcessById(child.pid)
        assert watched.poll() is None and running(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            watched.wait(timeout=0.05)
        watched.terminate()
        # not reaped yet (we are its parent and have not waited): a zombie counts as gone
        assert watched.wait(timeout=30) == -1 and watched.returncode == -1
        assert not running(child.pid)
        watched.kill()   # gone already: nothing to signal, no error
    finally:
        child.kill()
        child.wait(10)
    assert not running(child.pid)


def test_quiet_start_holds_the_collector_back_then_restores_it_and_freezes_the_survivors() -> None:
    import gc

    from anycell.heap import START_THRESHOLD, quiet_start

    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(RuntimeError):
            with quiet_start():
                assert gc.get_threshold()[0] == START_THRESHOLD
                kept = [[i] for i in range(1000)]
                raise RuntimeError("start-up failed")
        assert gc.get_threshold() == before          # restored even when the start-up failed
        assert gc.get_freeze_count() >= frozen + len(kept)
    finally:
        gc.unfreeze()
