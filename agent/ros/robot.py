"""A :class:`anycell.drivers.robot.Robot` over ROS 2: the joint trajectory controller contract.

Motion goes out as ``trajectory_msgs/JointTrajectory`` on the robot's
controller topic (``<robot>/joint_trajectory`` under the cell namespace, or the
cell config's ``controller_topic``), and completion is *confirmed* from
``sensor_msgs/JointState``: ``execute`` returns only when the measured joints
are within ``tolerance`` of the trajectory's last point, and raises
:class:`~anycell.errors.ExecutionError` when that does not happen within the
trajectory's duration plus ``margin``. ``stop`` publishes an empty trajectory
(ros2_control: stop and hold here) and makes a running ``execute`` raise. The
gripper is a ``std_srvs/SetBool`` service (``<robot>/gripper``) or a
JointTrajectory to the gripper joints, as the robot's ``gripper`` config says;
the joint states topic is configurable too (``joint_states_topic``).

A controller whose joint states stop coming (frozen or lost) is noticed within
``stale_after`` seconds: a running ``execute`` stops the arm and raises, and
:meth:`RosRobot.health` reports it on /diagnostics. The seconds are those this
process could watch: a stall of its own (no CPU, the GIL held elsewhere) is not
counted as the controller's silence.

This is the same contract as ros2_control's joint trajectory controller, so a
real arm can replace the simulated cell; the executor's robot skills run on it
unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from anycell.errors import DriverTimeout, ExecutionError
from anycell.drivers.robot import Robot, TrajectoryLike, check_joint_names, max_abs_diff

from anycell.agent.ros import conversions as cv

#: seconds: the most of one wait of the staleness watch that counts as the controller's silence. The
#: watch waits 50 ms at a time; a longer wait means this process did not run (no CPU, or another
#: thread held the GIL), and the joint states that came meanwhile wait unread for the spin thread.
WATCH_SLICE = 0.1


class RosRobot(Robot):
    """One arm behind a JointTrajectory controller. ``node`` must be spun by an executor elsewhere."""

    def __init__(self, node: Node, robot_id: str, *, namespace: str = "", controller_topic: str = "",
                 joint_names: Optional[List[str]] = None, tolerance: float = 0.01, margin: float = 5.0,
                 ready_timeout: float = 10.0, joint_states_topic: str = "", gripper: Any = None,
                 stale_after: float = 0.5) -> None:
        self.node = node
        self.robot_id = robot_id
        prefix = (namespace.rstrip("/") + "/") if namespace else ""
        self.tolerance = tolerance
        self.margin = margin
        self.ready_timeout = ready_timeout
        self._names = list(joint_names) if joint_names else None
        self._cond = threading.Condition()
        self._latest: Optional[cv.JointSample] = None
        self._halt_gen = 0
        self.stale_after = stale_after
        self._state_at: Optional[float] = None
        self._states = 0            # joint states received so far (the staleness watch counts on it)
        self.trajectory_topic = _under(prefix, controller_topic) or f"{prefix}{robot_id}/joint_trajectory"
        self.joint_states_topic = _under(prefix, joint_states_topic) or f"{prefix}{robot_id}/joint_states"
        self._pub = node.create_publisher(JointTrajectory, self.trajectory_topic, QoSProfile(depth=10))
        self._sub = node.create_subscription(JointState, self.joint_states_topic, self._on_state,
                                             QoSProfile(depth=10))
        self.gripper_cfg = gripper
        self._grip_pub = None
        self._gripper = None
        if gripper is not None and getattr(gripper, "interface", "set_bool") == "joint_trajectory":
            topic = _under(prefix, gripper.name) or f"{prefix}{robot_id}/gripper_controller/joint_trajectory"
            self._grip_pub = node.create_publisher(JointTrajectory, topic, QoSProfile(depth=10))
        else:
            name = _under(prefix, getattr(gripper, "name", "")) or f"{prefix}{robot_id}/gripper"
            self._gripper = node.create_client(SetBool, name)
        self._held: Optional[str] = None
        # a controller that can say why a motion ended early (sim_cell does) publishes it here
        self._faults: List[str] = []
        self._fault_sub = node.create_subscription(String, f"{prefix}{robot_id}/fault", self._on_fault,
                                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.executing = False

    def _on_fault(self, msg: String) -> None:
        with self._cond:
            self._faults.append(msg.data)
            self._cond.notify_all()

    def _on_state(self, msg: JointState) -> None:
        sample = cv.joint_state_from_msg(msg)
        with self._cond:
            if self._latest is not None and self._names:
                merged = dict(self._latest.by_name())
                merged.update(sample.by_name())
                if set(self._names) - set(sample.names):   # a gripper-only message: keep the arm's joints
                    sample = cv.JointSample(names=list(merged), positions=list(merged.values()))
            self._latest = sample
            self._state_at = time.monotonic()
            self._states += 1
            self._cond.notify_all()

    def state_age(self) -> Optional[float]:
        """Seconds since the last joint state (None before the first)."""
        at = self._state_at
        return None if at is None else time.monotonic() - at

    def health(self) -> Dict[str, Any]:
        """The robot's /diagnostics entry: controller connection and state tracking."""
        age = self.state_age()
        subs = self._pub.get_subscription_count()
        pubs = self.node.count_publishers(self.joint_states_topic)
        values = {"joint_states": self.joint_states_topic, "trajectory": self.trajectory_topic,
                  "controller_subscribers": str(subs), "state_publishers": str(pubs),
                  "state_age": "never" if age is None else f"{age:.2f}", "executing": str(self.executing)}
        if age is None:
            return {"level": 1, "message": "no joint states yet", "values": values}
        if pubs == 0 or subs == 0:
            return {"level": 2, "message": "controller lost (no joint state publisher or trajectory subscriber)",
                    "values": values}
        if age > self.stale_after:
            return {"level": 2, "message": f"controller frozen: no joint state for {age:.1f} s", "values": values}
        return {"level": 0, "message": "tracking", "values": values}

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for a joint state and for the controller to subscribe to our trajectory topic."""
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        with self._cond:
            while True:
                if self._latest is not None and self._pub.get_subscription_count() > 0:
                    if self._names is None:
                        self._names = list(self._latest.names)
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))

    def _require_ready(self) -> None:
        if not self.wait_ready():
            raise DriverTimeout(f"robot '{self.robot_id}': no joint states or no controller within "
                                f"{self.ready_timeout:.0f} s", hint="is the controller (or sim_cell) running?")

    @property
    def joint_names(self) -> List[str]:
        self._require_ready()
        assert self._names is not None
        return list(self._names)

    def joint_positions(self) -> List[float]:
        self._require_ready()
        with self._cond:
            q = self._latest.ordered(self._names) if self._latest else None  # type: ignore[arg-type]
        if q is None:
            raise ExecutionError(f"robot '{self.robot_id}': joint states lack some of {self._names}")
        return q

    def execute(self, trajectory: TrajectoryLike) -> None:
        check_joint_names(self, trajectory)
        q0 = self.joint_positions()
        off = max_abs_diff(q0, trajectory.positions[0])
        if off > max(self.tolerance, 0.05):
            raise ExecutionError(f"robot '{self.robot_id}' is not at the trajectory's start (off by {off:.3f} rad)",
                                 hint="replan from the current position")
        goal = list(trajectory.positions[-1])
        duration = float(trajectory.times[-1]) if trajectory.times else 0.0
        with self._cond:
            gen = self._halt_gen
            faults = len(self._faults)
        self._pub.publish(cv.trajectory_to_msg(trajectory))
        start = time.monotonic()
        deadline = start + duration + self.margin
        self.executing = True
        try:
            self._track(gen, goal, duration, start, deadline, faults)
        finally:
            self.executing = False

    def _track(self, gen: int, goal: List[float], duration: float, start: float, deadline: float,
               faults: int) -> None:
        silence = _Silence(self._states, start)
        with self._cond:
            while True:
                if self._halt_gen != gen:
                    raise ExecutionError(f"robot '{self.robot_id}': motion stopped", hint="halted by the cell")
                if len(self._faults) > faults:
                    raise ExecutionError(f"robot '{self.robot_id}': {self._faults[-1]}")   # carries its hint
                quiet = silence.update(self._states, time.monotonic())
                if quiet > self.stale_after:
                    self._cond.release()
                    try:
                        self.stop()
                    finally:
                        self._cond.acquire()
                    raise ExecutionError(f"robot '{self.robot_id}': controller frozen or lost (no joint state for "
                                         f"{quiet:.1f} s); stop sent", hint="check the robot controller, then resume")
                q = self._latest.ordered(self._names) if self._latest else None  # type: ignore[arg-type]
                err = max_abs_diff(q, goal) if q is not None else float("inf")
                now = time.monotonic()
                if err <= self.tolerance and now - start >= duration * 0.5:
                    return
                if now >= deadline:
                    raise ExecutionError(
                        f"robot '{self.robot_id}' did not reach the trajectory's end within "
                        f"{duration + self.margin:.1f} s (off by {err:.4f} rad, tolerance {self.tolerance} rad)",
                        hint="check the controller and for an obstruction")
                self._cond.wait(min(0.05, deadline - now))

    def stop(self) -> None:
        msg = JointTrajectory()
        msg.joint_names = list(self._names or [])
        self._pub.publish(msg)
        with self._cond:
            self._halt_gen += 1
            self._cond.notify_all()

    def _grip_trajectory(self, close: bool) -> bool:
        """Command the gripper joints; True when they stopped short of fully closed (a part between them)."""
        cfg = self.gripper_cfg
        assert self._grip_pub is not None
        target = list(cfg.closed if close else cfg.open)
        msg = JointTrajectory()
        msg.joint_names = list(cfg.joints)
        pt = JointTrajectoryPoint()
        pt.positions = [float(v) for v in target]
        pt.time_from_start = cv.duration_to_msg(float(cfg.duration))
        msg.points = [pt]
        self._grip_pub.publish(msg)
        end = time.monotonic() + float(cfg.duration) + 0.5
        with self._cond:
            while time.monotonic() < end:
                self._cond.wait(0.05)
            q = self._latest.ordered(list(cfg.joints)) if self._latest else None
        if q is None or not close:
            return True
        return max_abs_diff(q, cfg.closed) > 0.002

    def _grip(self, close: bool, timeout: float = 15.0) -> SetBool.Response:
        if self._grip_pub is not None:
            ok = self._grip_trajectory(close)
            return SetBool.Response(success=ok, message="" if ok else "the gripper closed on nothing")
        assert self._gripper is not None
        if not self._gripper.wait_for_service(timeout_sec=timeout):
            raise DriverTimeout(f"robot '{self.robot_id}': no gripper service", hint="is sim_cell running?")
        future = self._gripper.call_async(SetBool.Request(data=close))
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise DriverTimeout(f"robot '{self.robot_id}': gripper did not answer within {timeout:.0f} s")
        return future.result()

    def grasp(self, part_id: Optional[str] = None) -> bool:
        resp = self._grip(True)
        self._held = part_id if resp.success else None
        return bool(resp.success)

    def release(self) -> None:
        resp = self._grip(False)
        if not resp.success:
            raise ExecutionError(f"robot '{self.robot_id}': release failed: {resp.message}")
        self._held = None

    def holding(self) -> Optional[str]:
        return self._held


class _Silence:
    """How long a controller has been silent during a motion, as far as this process could watch.

    It counts from the command at the earliest (an idle controller may publish slowly: sim_cell
    rests at 5 Hz), restarts at every joint state received, and adds at most :data:`WATCH_SLICE`
    per look: when the process stalls (no CPU, or another thread holds the GIL, as PyBullet does in
    a planner thread), the watch is the first to run again, before the spin thread has read the
    states that came meanwhile, and the stall must not read as the controller's.
    """

    def __init__(self, states: int, start: float) -> None:
        self.states = states
        self.last = start
        self.quiet = 0.0

    def update(self, states: int, now: float) -> float:
        """The silence so far, given the count of joint states received and the time of this look."""
        if states != self.states:
            self.states, self.quiet = states, 0.0
        else:
            self.quiet += min(max(now - self.last, 0.0), WATCH_SLICE)
        self.last = now
        return self.quiet


def _under(prefix: str, name: str) -> str:
    """A configured topic name: absolute as given, else under the cell namespace; '' stays ''."""
    if not name:
        return ""
    return name if name.startswith("/") else prefix + name
