"""PackML: every legal transition, refused commands with reasons, listeners, thread safety."""

from __future__ import annotations

import threading

import pytest

from anycell.agent import packml as pm
from anycell.agent.packml import PackML
from anycell.errors import StateError


def test_full_cycle_through_every_wait_state() -> None:
    seen = []
    m = PackML()
    m.add_listener(lambda old, new, cause: seen.append((old, new, cause)))
    assert m.state == pm.STOPPED
    assert m.command("reset") == pm.RESETTING
    assert m.state_complete() == pm.IDLE
    m.command("start")
    m.state_complete()
    assert m.state == pm.EXECUTE
    m.command("hold"); m.state_complete()
    assert m.state == pm.HELD
    m.command("unhold"); m.state_complete()
    m.command("suspend"); m.state_complete()
    assert m.state == pm.SUSPENDED
    m.command("unsuspend"); m.state_complete()
    assert m.state == pm.EXECUTE
    m.state_complete(); m.state_complete()
    assert m.state == pm.COMPLETE
    m.command("abort"); m.state_complete()
    assert m.state == pm.ABORTED
    m.command("clear"); m.state_complete()
    assert m.state == pm.STOPPED
    states = [new for _old, new, _c in seen]
    assert states == ["Resetting", "Idle", "Starting", "Execute", "Holding", "Held", "Unholding", "Execute",
                      "Suspending", "Suspended", "Unsuspending", "Execute", "Completing", "Complete",
                      "Aborting", "Aborted", "Clearing", "Stopped"]
    assert seen[0] == ("Stopped", "Resetting", "reset")
    assert seen[1][2] == "state_complete"


@pytest.mark.parametrize("state,command", [
    (pm.STOPPED, "start"), (pm.IDLE, "hold"), (pm.IDLE, "unhold"), (pm.EXECUTE, "start"),
    (pm.EXECUTE, "reset"), (pm.HELD, "suspend"), (pm.ABORTED, "reset"), (pm.ABORTED, "stop"),
    (pm.ABORTED, "abort"), (pm.STOPPED, "stop"), (pm.STOPPED, "clear"), (pm.EXECUTE, "unsuspend"),
])
def test_illegal_command_refused_with_reason(state: str, command: str) -> None:
    m = PackML(state)
    with pytest.raises(StateError) as info:
        m.command(command)
    assert state in info.value.message and command in info.value.message
    assert info.value.hint
    assert m.state == state  # nothing moved


def test_stop_and_abort_from_everywhere_they_are_allowed() -> None:
    for state in pm.STATES:
        m = PackML(state)
        if state in (pm.STOPPED, pm.STOPPING, pm.ABORTING, pm.ABORTED, pm.CLEARING):
            with pytest.raises(StateError):
                m.command("stop")
        else:
            assert m.command("stop") == pm.STOPPING
        m = PackML(state)
        if state in (pm.ABORTING, pm.ABORTED):
            with pytest.raises(StateError):
                m.command("abort")
        else:
            assert m.command("abort") == pm.ABORTING


def test_unknown_command_and_completing_a_wait_state() -> None:
    m = PackML(pm.IDLE)
    with pytest.raises(StateError, match="unknown PackML command"):
        m.command("launch")
    with pytest.raises(StateError, match="wait state"):
        m.state_complete()
    m.command("start")
    with pytest.raises(StateError, match="not Holding"):
        m.state_complete(expected=pm.HOLDING)
    assert m.try_complete(pm.HOLDING) is False
    assert m.try_complete(pm.STARTING) is True
    assert m.state == pm.EXECUTE
    assert m.allowed() == ["stop", "hold", "suspend", "abort"]


def test_concurrent_commands_keep_the_machine_consistent() -> None:
    """Many threads racing hold/unhold/complete: every transition the listeners saw is a legal one."""
    m = PackML(pm.EXECUTE)
    seen = []
    m.add_listener(lambda old, new, cause: seen.append((old, new, cause)))

    def worker() -> None:
        for _ in range(200):
            for cmd in ("hold", "unhold", "suspend", "unsuspend"):
                try:
                    m.command(cmd)
                except StateError:
                    pass
            for st in (pm.HOLDING, pm.UNHOLDING, pm.SUSPENDING, pm.UNSUSPENDING):
                m.try_complete(st)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    prev = pm.EXECUTE
    for old, new, cause in seen:
        assert old == prev, "transitions were seen out of order"
        assert new == (pm.ACTING[old] if cause == "state_complete" else pm.target_of(old, cause))
        prev = new
    assert m.state == prev


def test_wait_for_wakes_on_transition() -> None:
    m = PackML(pm.IDLE)
    threading.Timer(0.05, lambda: m.command("start")).start()
    assert m.wait_for([pm.STARTING], timeout=5.0)
    assert not m.wait_for([pm.ABORTED], timeout=0.01)
