"""The ``sim_cell`` ROS 2 node: the PyBullet cell, playing each robot's controller.

Per robot ``<r>`` of the cell, under the cell's namespace:

* ``<r>/joint_trajectory`` (trajectory_msgs/JointTrajectory, in): the command,
  with ros2_control's joint trajectory controller semantics: a new trajectory
  replaces the one running, and an *empty* one (no points) stops the arm where
  it is;
* ``<r>/joint_states`` (sensor_msgs/JointState, out, ``rate`` Hz): the arm's
  joint positions and velocities as measured in the simulation;
* ``<r>/gripper`` (std_srvs/SetBool): ``true`` closes the gripper (or switches
  suction on) and answers ``success`` only when a part is really held;
  ``false`` opens it;
* ``<r>/fault`` (std_msgs/String, out): why a trajectory ended early (the two
  bodies in contact, the tracking error), so the robot's driver reports the
  real cause rather than "did not reach the trajectory's end".

And once per cell: ``sim/request`` / ``sim/response`` (std_msgs/String JSON
with ``request_id``), the simulation hooks the cell agent's runner uses to
present feeder parts, place what a machine made, and measure parts for
inspection (:func:`anycell.agent.simulation.hooks.serve_call` on
:class:`anycell.agent.simulation.hooks.WorldHooks`; the client is :class:`anycell.agent.ros.sim_bridge.RosSimHooks`).

One physics thread owns the PyBullet world (PyBullet is not thread-safe): it
runs every robot's trajectory, grasp and release at the same time, as the step
generators of :class:`anycell.sim.robot.SimRobot` (the same driver ``anycell
sim`` uses), steps the world paced to the wall clock, and publishes joint
states between physics steps. ROS callbacks only hand it work. A simulation hook
that steps the world (settling a part it presents) runs the same steps, so the
robots go on moving and reporting while it does.

An idle cell costs next to nothing: once nothing has been commanded for :data:`SETTLE`
simulated seconds and no part or joint moves, the world is not stepped at all and joint
states go out at :data:`IDLE_RATE` until the next command arrives.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from anycell.cell import CellConfig
from anycell.errors import AnycellError

from anycell.agent.ros import conversions as cv
from anycell.agent.ros.node_main import forward_logging, init_with_cell, spin_until_shutdown

log = logging.getLogger(__name__)

#: Hz: joint states while the world rests (the robot driver calls a controller frozen after 0.5 s)
IDLE_RATE = 5.0
#: simulated seconds every command, hook or motion is stepped for before the world may rest
SETTLE = 0.5


class _StepHook:
    """The world as the simulation hooks see it: each physics step they take is a step of the node.

    A hook that settles a freshly presented part steps the world for 0.3 simulated seconds (real
    time here). Stepped around the node, that would silence every robot's joint states, stall
    the robots' motions and leave their commands (a stop) waiting for as long: a robot moving
    meanwhile reads as a frozen controller to its driver. So ``step`` and ``settle`` run the
    node's own step (commands taken, every robot advanced, joint states published).
    """

    def __init__(self, world: Any, node_step: Callable[[], None]) -> None:
        self._world = world
        self._node_step = node_step

    def step(self, n: int = 1) -> None:
        for _ in range(int(n)):
            self._node_step()

    def settle(self, seconds: float = 0.2) -> None:
        """Let freshly added parts come to rest, while the robots go on with what they do."""
        self.step(max(1, int(round(seconds / self._world.time_step))))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)


class _Activity:
    """What one robot is doing now: a step generator (a trajectory, a grasp or a release)."""

    def __init__(self, kind: str, steps: Any, reply: Optional[tuple] = None) -> None:
        self.kind = kind
        self.steps = steps
        self.reply = reply          # (done event, answer box) of a gripper call


class SimCellNode(Node):
    """Owns a SimWorld and a SimRobot per robot; see the module docstring for the interface.

    Every robot runs at the same time: each physics step, the physics thread advances what
    every robot is doing (its trajectory, grasp or release, as a step generator) and then steps
    the world once, so two robots commanded together move together, as on the floor.
    """

    def __init__(self, cell: CellConfig, *, rate: float = 50.0, realtime: bool = True) -> None:
        super().__init__("sim_cell", namespace="/" + cell.cell.id)
        from anycell.sim.robot import SimRobot
        from anycell.sim.world import SimWorld

        self.cell = cell
        self.world = SimWorld(cell, gui=False, realtime=realtime)
        # pictures render in a child process: a render holds the GIL, and this process's physics
        # thread must publish joint states and pace the world without a gap
        self.world.render_pictures_apart()
        self._period = 1.0 / rate
        self._last_pub = 0.0
        #: True while the world stands still and is not stepped (see :meth:`_rest`)
        self.resting = False
        self._jobs: "queue.Queue[tuple]" = queue.Queue()
        self._deferred: Deque[tuple] = deque()   # hook calls that came while another hook ran
        self._generation: Dict[str, int] = {}
        self._active: Dict[str, _Activity] = {}
        self._pending: Dict[str, List[tuple]] = {}
        self._stop = threading.Event()
        self.max_concurrent = 0
        hooked = _StepHook(self.world, self._step_during_hook)
        self.robots = {r.id: SimRobot(self.world, r.id) for r in cell.robots}
        from anycell.agent.simulation.hooks import WorldHooks

        self.hooks = WorldHooks(hooked)
        group = ReentrantCallbackGroup()
        from anycell.agent.ros.json_topic import QOS as reliable

        self._answered: Dict[str, Dict[str, Any]] = {}
        self._answer_lock = threading.Lock()
        self._rendering: Set[str] = set()       # request ids of pictures still rendering
        self._renders: "queue.Queue[Optional[Tuple[str, Callable[[], str]]]]" = queue.Queue()
        self._render_thread = threading.Thread(target=self._render_loop, name="pictures", daemon=True)
        self._render_thread.start()
        self._sim_pub = self.create_publisher(String, "sim/response", reliable)
        self.create_subscription(String, "sim/request", self._on_sim_request, reliable, callback_group=group)
        self._state_pubs = {}
        self._fault_pubs = {}
        for rid in self.robots:
            self._generation[rid] = 0
            self._state_pubs[rid] = self.create_publisher(JointState, f"{rid}/joint_states", QoSProfile(depth=10))
            self._fault_pubs[rid] = self.create_publisher(String, f"{rid}/fault", reliable)
            self.create_subscription(JointTrajectory, f"{rid}/joint_trajectory",
                                     lambda msg, rid=rid: self._on_trajectory(rid, msg), QoSProfile(depth=10),
                                     callback_group=group)
            self.create_service(SetBool, f"{rid}/gripper",
                                lambda req, resp, rid=rid: self._on_gripper(rid, req, resp), callback_group=group)
        self._physics = threading.Thread(target=self._physics_loop, name="physics", daemon=True)
        self._physics.start()

    # ---- ROS side (any thread): hand work to the physics thread
    def _on_trajectory(self, rid: str, msg: JointTrajectory) -> None:
        self._generation[rid] += 1      # preempts whatever runs on this robot
        self._jobs.put(("trajectory", rid, self._generation[rid], msg))

    def _on_sim_request(self, msg: String) -> None:
        self._jobs.put(("hook", "", msg.data, None))

    def _on_gripper(self, rid: str, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        done = threading.Event()
        box: Dict[str, Any] = {}
        self._jobs.put(("gripper", rid, bool(req.data), (done, box)))
        # wait in short slices: on Humble a blocked callback keeps the executor's pool (and the exit) waiting
        end = time.monotonic() + 10.0
        while not done.wait(0.05) and not self._stop.is_set() and time.monotonic() < end:
            pass
        if not done.is_set():
            resp.success, resp.message = False, "the simulation did not answer within 10 s (or is shutting down)"
        else:
            resp.success, resp.message = box["success"], box["message"]
        return resp

    # ---- physics thread
    def _after_step(self) -> None:
        now = time.monotonic()
        if now - self._last_pub >= self._period:
            self._last_pub = now
            self._publish_states()

    def _publish_states(self) -> None:
        stamp = self.get_clock().now().nanoseconds * 1e-9
        for rid, robot in self.robots.items():
            sample = cv.JointSample(names=robot.joint_names, positions=robot.joint_positions(),
                                    velocities=robot.joint_velocities(), stamp=stamp)
            if rclpy.ok():
                self._state_pubs[rid].publish(cv.joint_state_to_msg(sample))

    def _fault(self, rid: str, text: str) -> None:
        """Tell the robot's driver why its motion ended early (the controller's own log is not enough)."""
        log.error("%s: %s", rid, text)
        if rclpy.ok():
            self._fault_pubs[rid].publish(String(data=text))

    def _take(self, job: tuple) -> None:
        """Start (or refuse) one piece of work handed over by a ROS callback."""
        kind, rid, arg, extra = job
        if kind == "hook":
            self._serve_hook(arg)
            return
        robot = self.robots[rid]
        if kind == "gripper":
            if rid in self._active:
                # the driver confirms a motion within tolerance while it still settles: the gripper
                # acts when the arm has stopped, as a real controller's would
                self._pending.setdefault(rid, []).append(job)
                return
            steps = robot.grasp_steps() if arg else robot.release_steps()
            self._active[rid] = _Activity("grasp" if arg else "release", steps, extra)
            return
        if arg != self._generation[rid]:
            return                           # a newer command replaced this one before it started
        if rid in self._active and self._active[rid].kind != "trajectory":
            self._pending.setdefault(rid, []).append(job)    # after the grasp or release that runs
            return
        old = self._active.pop(rid, None)
        if old is not None:
            old.steps.close()
            robot.stop()
            log.debug("%s: trajectory replaced or stopped mid-motion", rid)
        msg: JointTrajectory = extra
        if not msg.points:
            robot.stop()
            log.info("%s: stop (empty trajectory)", rid)
            return
        try:
            traj = cv.trajectory_from_msg(msg)
        except AnycellError as exc:
            self._fault(rid, str(exc))
            return
        self._active[rid] = _Activity("trajectory", robot.execute_steps(traj))

    def _advance(self) -> None:
        """One step of what every robot is doing; finished and failed work is answered."""
        for rid, act in list(self._active.items()):
            try:
                next(act.steps)
                continue
            except StopIteration as stop:
                result, error = stop.value, None
            except AnycellError as exc:
                result, error = None, exc
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the physics thread
                log.exception("%s: %s failed", rid, act.kind)
                result, error = None, exc
            del self._active[rid]
            waiting = self._pending.get(rid)
            if waiting:
                self._take(waiting.pop(0))
            if act.kind == "trajectory":
                if error is not None:
                    self.robots[rid].stop()
                    self._fault(rid, str(error))
                continue
            done, box = act.reply  # type: ignore[misc]
            robot = self.robots[rid]
            if error is not None:
                box.update(success=False, message=str(error))
            elif act.kind == "grasp":
                box.update(success=bool(result),
                           message=f"holding {robot.holding()}" if result else "nothing grasped")
            else:
                box.update(success=True, message="released")
            done.set()

    def _drain(self) -> bool:
        """Take every piece of work the ROS callbacks handed over; True when there was any."""
        took = False
        while True:
            job = self._next_job()
            if job is None:
                return took
            self._take(job)
            took = True

    def _next_job(self) -> Optional[tuple]:
        """The oldest piece of work: hook calls held back while another hook ran come first."""
        if self._deferred:
            return self._deferred.popleft()
        try:
            return self._jobs.get_nowait()
        except queue.Empty:
            return None

    def _step_all(self) -> None:
        """One physics step of the whole cell: every robot's work advances, then joint states go out."""
        self.max_concurrent = max(self.max_concurrent, len(self._active))
        self._advance()
        self.world.step(1)          # gravity and the hold controllers act on the idle robots too
        self._after_step()

    def _step_during_hook(self) -> None:
        """A physics step a hook asked for (settling a part): robot commands are taken now (a stop
        must not wait for the part to settle); another hook call waits for this one to end."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job[0] == "hook":
                self._deferred.append(job)
            else:
                self._take(job)
        self._step_all()

    def _rest(self) -> None:
        """The world stands still and nobody commands anything: wait for work without stepping.

        Joint states go out at :data:`IDLE_RATE` (often enough for a driver's staleness check);
        the first piece of work wakes the loop, and realtime pacing restarts from the current
        simulated time.
        """
        self.resting = True
        try:
            while not self._stop.is_set():
                self._publish_states()
                try:
                    job = self._jobs.get(timeout=1.0 / IDLE_RATE)
                except queue.Empty:
                    continue
                self.world.resume_clock()
                self.resting = False    # the work may step the world (a hook settling a part)
                self._take(job)
                return
        finally:
            self.resting = False

    def _physics_loop(self) -> None:
        settle_until = self.world.sim_time + SETTLE
        while not self._stop.is_set():
            if self._drain() or self._active:
                settle_until = self.world.sim_time + SETTLE
            elif self.world.sim_time >= settle_until:
                if self.world.at_rest():
                    self._rest()
                    settle_until = self.world.sim_time + SETTLE
                    continue
                settle_until = self.world.sim_time + 0.1   # still moving: look again soon
            self._step_all()

    def _serve_hook(self, text: str) -> None:
        """Serve one hook call on the physics thread; a picture is captured here and rendered apart."""
        import json

        from anycell.agent.simulation.hooks import serve_call

        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._answer(None, {"ok": False, "error": {"error": "ConfigError",
                                                       "message": f"sim request is not a JSON object: {exc}"}})
            return
        rid = request.get("request_id")
        rid = rid if isinstance(rid, str) else None
        with self._answer_lock:
            if rid is not None and rid in self._rendering:
                return                      # a resent request for a picture still rendering: one answer comes
            answer = self._answered.get(rid) if rid is not None else None
        if answer is None:   # a resent request (same id) gets the first answer, never a second action
            if request.get("op") == "snapshot" and rid is not None:
                try:
                    later = self.hooks.snapshot_later(str(request["path"]), request.get("camera"))
                except AnycellError as exc:
                    answer = {"ok": False, "error": exc.to_dict()}
                except KeyError as exc:
                    answer = {"ok": False, "error": {"error": "ConfigError",
                                                     "message": f"malformed sim call 'snapshot': {exc}"}}
                else:
                    with self._answer_lock:
                        self._rendering.add(rid)
                    self._renders.put((rid, later))
                    return
            else:
                answer = serve_call(self.hooks, request)
        self._answer(rid, answer)

    def _answer(self, rid: Optional[str], answer: Dict[str, Any]) -> None:
        """Publish the answer to request ``rid`` (any thread), remembered for a resend of the same id."""
        import json

        answer = dict(answer, request_id=rid)
        if rid is not None:
            with self._answer_lock:
                self._rendering.discard(rid)
                self._answered[rid] = answer
                while len(self._answered) > 1000:
                    self._answered.pop(next(iter(self._answered)))
        if rclpy.ok():
            self._sim_pub.publish(String(data=json.dumps(answer)))

    def _render_loop(self) -> None:
        """The pictures thread: waits on the picture process (no GIL held) and answers each picture."""
        while True:
            item = self._renders.get()
            if item is None:
                return
            rid, render = item
            try:
                answer: Dict[str, Any] = {"ok": True, "result": render()}
            except AnycellError as exc:
                answer = {"ok": False, "error": exc.to_dict()}
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the pictures thread
                log.exception("picture %s failed", rid)
                answer = {"ok": False, "error": {"error": "ExecutionError", "message": f"picture failed: {exc}"}}
            self._answer(rid, answer)

    def close(self) -> None:
        self._stop.set()
        self._physics.join(timeout=5.0)
        while True:                     # pictures not yet rendered are dropped: nobody waits for them now
            try:
                self._renders.get_nowait()
            except queue.Empty:
                break
        self._renders.put(None)
        self.world.close()              # ends the picture process: a render in progress fails at once
        self._render_thread.join(timeout=5.0)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``sim_cell`` (``ros2 run anycell sim_cell --ros-args -p cell:=...``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        started = init_with_cell("sim_cell", "sim_cell_params", (("cell", ""), ("rate", 50.0), ("realtime", True)),
                                 argv)
        if started is None:
            return 2
        params, cell = started
        node = SimCellNode(cell, rate=float(params["rate"]), realtime=bool(params["realtime"]))
        forward_logging(node)
    except KeyboardInterrupt:   # Ctrl-C while starting: nothing to clean up yet, and no traceback
        if rclpy.ok():
            rclpy.shutdown()
        return 0
    node.get_logger().info(f"simulated cell '{cell.cell.id}' up: robots {', '.join(node.robots)}")
    spin_until_shutdown(node, 2, node.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
