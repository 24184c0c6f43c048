"""One physics clock for several robots moving at once in one simulated world.

Each robot's driver (:class:`anycell.sim.robot.SimRobot`) expresses a motion, a
grasp or a release as a generator that yields whenever it needs one physics
step. :meth:`ConcurrentStepper.run` is called from the robot's own thread; the
first caller becomes the *driver*: in every round it advances every registered
generator to its next yield (each robot commands its motors for the coming
step), then steps the world once. So two robots that move at the same time move
in the same simulated time, exactly as on the floor, and PyBullet (which is
not thread-safe) is only ever stepped by one thread. When the driver's own
generator ends, a waiting caller takes over.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Generator, List


class _Entry:
    __slots__ = ("gen", "done", "result", "error")

    def __init__(self, gen: Generator[None, None, Any]) -> None:
        self.gen = gen
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class ConcurrentStepper:
    """Drives the step generators of every moving robot of ``world``, one shared step at a time.

    ``lock`` is held during each round (advance every generator, step once): other
    threads that touch the physics (presenting a part, settling it) take it too.
    """

    def __init__(self, world: Any) -> None:
        self.world = world
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self._entries: Dict[int, _Entry] = {}
        self._next = 0
        self._driving = False
        self.max_concurrent = 0          # most generators ever advanced in one round (for tests and reports)
        self._paused: set = set()

    def pause(self, holder: str) -> None:
        """Stop the clock while ``holder`` thinks (a robot planning its next motion).

        In simulation, planning takes no simulated time: without this, a robot whose
        motion runs while another plans would finish it in a burst of physics steps,
        and the two would never move at once in simulated time. The holder must not
        wait for anything that needs the clock while it holds it.
        """
        with self._cond:
            self._paused.add(holder)

    def resume(self, holder: str) -> None:
        """Let the clock run again (idempotent)."""
        with self._cond:
            self._paused.discard(holder)
            self._cond.notify_all()

    def run(self, gen: Generator[None, None, Any]) -> Any:
        """Run ``gen`` to its end alongside every other registered generator; return its value or raise."""
        entry = _Entry(gen)
        with self._cond:
            key = self._next
            self._next += 1
            self._entries[key] = entry
            while not entry.done:
                if self._driving:
                    self._cond.wait(0.05)
                    continue
                self._driving = True
                try:
                    self._drive(entry)
                finally:
                    self._driving = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _drive(self, mine: _Entry) -> None:
        """Rounds until ``mine`` ends (called with the condition held; released while stepping)."""
        while not mine.done:
            if self._paused:
                self._cond.wait(0.05)
                continue
            batch: List[tuple] = list(self._entries.items())
            self._cond.release()
            try:
                with self.lock:
                    stepped = 0
                    for _key, entry in batch:
                        try:
                            next(entry.gen)
                            stepped += 1
                        except StopIteration as stop:
                            entry.result, entry.done = stop.value, True
                        except BaseException as exc:  # noqa: BLE001 - handed to the thread that owns it
                            entry.error, entry.done = exc, True
                    self.max_concurrent = max(self.max_concurrent, stepped)
                    if stepped:
                        self.world.step()
            finally:
                self._cond.acquire()
            for key, entry in batch:
                if entry.done:
                    self._entries.pop(key, None)
            self._cond.notify_all()
