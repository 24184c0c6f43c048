"""The PackML (ISA-TR88.00.02) state machine of a cell, in plain Python.

The cell is always in exactly one of the seventeen states. Operators move it
with *commands* (start, stop, hold, ...). A command the current state does not
allow raises :class:`~anycell.errors.StateError` with the reason, so the ROS
service, the CLI and the tests all report the same sentence.

Acting states (the ones ending in ``-ing``: Starting, Holding, Stopping, ...)
are the cell doing something on the way to the next wait state. Whoever does
that work (the executor, the cell service) calls :meth:`PackML.state_complete`
when it is done; the machine then moves to the state the model names. Execute
is an acting state too: its completion goes to Completing, then Complete.

Listeners are called on every transition, in order, with
``(old_state, new_state, cause)`` where cause is the command name or
``"state_complete"``. They run on the thread that caused the transition,
while the machine's lock is held, so they see transitions in order; they must
be quick and must not block on another thread that needs the machine.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional

from anycell.errors import StateError

from anycell.packml_model import (  # noqa: F401 - re-exported: the cell's vocabulary
    ABORTED, ABORTING, ACTING, CLEARING, COMMANDS, COMPLETE, COMPLETING, EXECUTE, HELD, HOLDING, IDLE, RESETTING,
    STARTING, STATES, STOPPED, STOPPING, SUSPENDED, SUSPENDING, UNHOLDING, UNSUSPENDING, target_of,
)
from anycell.packml_model import NEEDS as _PACKML_NEEDS

log = logging.getLogger(__name__)

#: Why a command is refused, by command, for the reason text (the cell's wording).
_NEEDS: Dict[str, str] = {**_PACKML_NEEDS, "start": "start needs Idle (reset the cell first)",
                          "stop": "the cell is already stopped or on its way to Stopped/Aborted",
                          "abort": "the cell is already aborting or aborted"}

Listener = Callable[[str, str, str], None]


class PackML:
    """A thread-safe PackML state machine with listeners.

    ``PackML()`` starts in Stopped, as a cell does after power-up.
    """

    def __init__(self, initial: str = STOPPED) -> None:
        if initial not in STATES:
            raise StateError(f"unknown PackML state '{initial}'", hint="one of: " + ", ".join(STATES))
        self._state = initial
        self._cond = threading.Condition(threading.RLock())
        self._listeners: List[Listener] = []
        self._since = time.monotonic()

    # ---- reading
    @property
    def state(self) -> str:
        with self._cond:
            return self._state

    def seconds_in_state(self) -> float:
        with self._cond:
            return time.monotonic() - self._since

    def allowed(self) -> List[str]:
        """The commands the current state accepts, in COMMANDS order."""
        with self._cond:
            return [c for c in COMMANDS if target_of(self._state, c) is not None]

    def is_acting(self) -> bool:
        with self._cond:
            return self._state in ACTING

    # ---- changing
    def command(self, name: str) -> str:
        """Apply an operator command; returns the new state or raises StateError with the reason."""
        with self._cond:
            if name not in COMMANDS:
                raise StateError(f"unknown PackML command '{name}'", field="command",
                                 hint="one of: " + ", ".join(COMMANDS))
            target = target_of(self._state, name)
            if target is None:
                raise StateError(f"'{name}' is not allowed in state {self._state}",
                                 field="command", hint=_NEEDS[name])
            self._move(target, name)
            return target

    def state_complete(self, expected: Optional[str] = None) -> str:
        """Finish the current acting state. With ``expected``, only when the machine is still in it.

        Returns the new state. Raises StateError in a wait state (Idle, Held,
        ...) or when ``expected`` no longer holds (a Stop came in between,
        for example), so a slow worker never completes a state it did not own.
        """
        with self._cond:
            if expected is not None and self._state != expected:
                raise StateError(f"state is {self._state}, not {expected}; not completing it")
            target = ACTING.get(self._state)
            if target is None:
                raise StateError(f"{self._state} is a wait state; there is nothing to complete")
            self._move(target, "state_complete")
            return target

    def try_complete(self, expected: str) -> bool:
        """state_complete(expected) that returns False instead of raising when the state moved on."""
        with self._cond:
            if self._state != expected or expected not in ACTING:
                return False
            self._move(ACTING[expected], "state_complete")
            return True

    def locked(self) -> "threading.Condition":
        """The machine's lock, for a caller that must act on a state before it can change (a safe point)."""
        return self._cond

    def add_listener(self, listener: Listener) -> None:
        with self._cond:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wait_for(self, states: Iterable[str], timeout: Optional[float] = None) -> bool:
        """Block until the state is one of ``states``; False on timeout."""
        wanted = set(states)
        with self._cond:
            return self._cond.wait_for(lambda: self._state in wanted, timeout)

    def wait_change(self, timeout: Optional[float]) -> str:
        """Block until the state changes (or timeout); returns the state then."""
        with self._cond:
            before = self._state
            self._cond.wait_for(lambda: self._state != before, timeout)
            return self._state

    def _move(self, target: str, cause: str) -> None:
        old = self._state
        self._state = target
        self._since = time.monotonic()
        log.info("PackML %s -> %s (%s)", old, target, cause)
        for listener in list(self._listeners):
            try:
                listener(old, target, cause)
            except Exception:  # a listener's bug must not wedge the state machine
                log.exception("PackML listener failed on %s -> %s", old, target)
        self._cond.notify_all()
