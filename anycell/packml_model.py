"""The PackML state model (ISA-TR88.00.02, OPC 30050): states, commands and one transition table.

Vocabulary shared by everything that runs a PackML state machine: the cell's own state machine
(:mod:`anycell.agent.packml`), the simulated OPC UA machines (:mod:`anycell.sim.opcua_machine`)
and the OPC UA driver, which maps what a server reports to these names. Keeping one table means
the simulator cannot accept a command the cell would refuse, or the other way round.

Acting states (``Starting``, ``Holding``, ...) lead on by themselves to the state in
:data:`ACTING`; wait states (``Idle``, ``Held``, ...) only leave on a command.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

STOPPED = "Stopped"
IDLE = "Idle"
STARTING = "Starting"
EXECUTE = "Execute"
COMPLETING = "Completing"
COMPLETE = "Complete"
HOLDING = "Holding"
HELD = "Held"
UNHOLDING = "Unholding"
SUSPENDING = "Suspending"
SUSPENDED = "Suspended"
UNSUSPENDING = "Unsuspending"
STOPPING = "Stopping"
ABORTING = "Aborting"
ABORTED = "Aborted"
CLEARING = "Clearing"
RESETTING = "Resetting"

STATES: Tuple[str, ...] = (
    STOPPED, IDLE, STARTING, EXECUTE, COMPLETING, COMPLETE, HOLDING, HELD, UNHOLDING,
    SUSPENDING, SUSPENDED, UNSUSPENDING, STOPPING, ABORTING, ABORTED, CLEARING, RESETTING,
)
#: Command names, lower case as the cell's API spells them; ``.capitalize()`` gives the OPC UA method name.
COMMANDS: Tuple[str, ...] = ("start", "stop", "hold", "unhold", "suspend", "unsuspend", "reset", "abort", "clear")

#: Acting states and the state each leads to when its work is done. Execute is acting too: a
#: finished cycle goes to Completing, then Complete.
ACTING: Dict[str, str] = {
    STARTING: EXECUTE,
    EXECUTE: COMPLETING,
    COMPLETING: COMPLETE,
    HOLDING: HELD,
    UNHOLDING: EXECUTE,
    SUSPENDING: SUSPENDED,
    UNSUSPENDING: EXECUTE,
    STOPPING: STOPPED,
    ABORTING: ABORTED,
    CLEARING: STOPPED,
    RESETTING: IDLE,
}

#: Commands other than stop/abort: command -> {from state: target state}.
TRANSITIONS: Dict[str, Dict[str, str]] = {
    "start": {IDLE: STARTING},
    "reset": {STOPPED: RESETTING, COMPLETE: RESETTING},
    "hold": {EXECUTE: HOLDING},
    "unhold": {HELD: UNHOLDING},
    "suspend": {EXECUTE: SUSPENDING},
    "unsuspend": {SUSPENDED: UNSUSPENDING},
    "clear": {ABORTED: CLEARING},
}
#: Stop is allowed from every state but these (already stopped, or on the way to Stopped/Aborted).
NO_STOP = frozenset({STOPPED, STOPPING, ABORTING, ABORTED, CLEARING})
#: Abort is allowed from every state but these.
NO_ABORT = frozenset({ABORTING, ABORTED})

#: Why a command is refused, for error texts.
NEEDS: Dict[str, str] = {
    "start": "start needs Idle (reset first)",
    "reset": "reset needs Stopped or Complete",
    "hold": "hold needs Execute",
    "unhold": "unhold needs Held",
    "suspend": "suspend needs Execute",
    "unsuspend": "unsuspend needs Suspended",
    "clear": "clear needs Aborted",
    "stop": "already stopped or on its way to Stopped/Aborted",
    "abort": "already aborting or aborted",
}

#: OPC 30050 state numbers (the ``StateNumber`` of each state object; PackML tag ``StateCurrent``).
STATE_NUMBERS: Dict[str, int] = {
    "Clearing": 1, "Stopped": 2, "Starting": 3, "Idle": 4, "Suspended": 5, "Execute": 6, "Stopping": 7,
    "Aborting": 8, "Aborted": 9, "Holding": 10, "Held": 11, "Unholding": 12, "Suspending": 13,
    "Unsuspending": 14, "Resetting": 15, "Completing": 16, "Complete": 17,
}


def target_of(state: str, command: str) -> Optional[str]:
    """The state ``command`` (lower case) leads to from ``state``, or None when it is not allowed."""
    if command == "stop":
        return None if state in NO_STOP else STOPPING
    if command == "abort":
        return None if state in NO_ABORT else ABORTING
    return TRANSITIONS.get(command, {}).get(state)


def state_name(value: object) -> Optional[str]:
    """A PackML name from what a server may report: a name in any case, or an OPC 30050 number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return next((s for s, n in STATE_NUMBERS.items() if n == value), None)
    text = str(value).strip()
    if text.isdigit():
        return state_name(int(text))
    return next((s for s in STATES if s.lower() == text.lower()), None)
