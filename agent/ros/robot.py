"""A :class:`anycell.drivers.robot.Robot` over ROS 2: the joint trajectory controller contract.

Motion goes out as ``trajectory_msgs/JointTrajectory`` on the robot's
controller topic (``<robot>/joint_trajectory`` under the cell namespace, or the
cell config's ``controller_topic``), and completion is *confirmed* from
``sensor_msgs/JointState``: ``execute`` returns only when the measured joints
are within ``tolerance`` of the trajectory's last point, and raises
:class:`~anycell.errors.ExecutionError` when that does not happen within the
trajectory's duration plus ``margin``. ``stop`` publishes an empty trajectory
(ros2_control: stop and hold here) and makes a running ``execute`` raise. The
gripper is a ``std_srvs/SetBool`` service, ``<robot>/gripper``.

This is the same contract as ros2_control's joint trajectory controller, so a
real arm can replace the simulated cell; the executor's robot skills run on it
unchanged.
"""

from __future__ import annotations

import threading
import time
from typing import List, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from anycell.errors import DriverTimeout, ExecutionError
from anycell.drivers.robot import Robot, TrajectoryLike, check_joint_names, max_abs_diff

from anycell.agent.ros import conversions as cv


class RosRobot(Robot):
    """One arm behind a JointTrajectory controller. ``node`` must be spun by an executor elsewhere."""

    def __init__(self, node: Node, robot_id: str, *, namespace: str = "", controller_topic: str = "",
                 joint_names: Optional[List[str]] = None, tolerance: float = 0.01, margin: float = 5.0,
                 ready_timeout: float = 10.0) -> None:
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
        self._pub = node.create_publisher(JointTrajectory, controller_topic or f"{prefix}{robot_id}/joint_trajectory",
                                          QoSProfile(depth=10))
        self._sub = node.create_subscription(JointState, f"{prefix}{robot_id}/joint_states", self._on_state,
                                             QoSProfile(depth=10))
        self._gripper = node.create_client(SetBool, f"{prefix}{robot_id}/gripper")
        self._held: Optional[str] = None
        # a controller that can say why a motion ended early (sim_cell does) publishes it here
        self._faults: List[str] = []
        self._fault_sub = node.create_subscription(String, f"{prefix}{robot_id}/fault", self._on_fault,
                                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def _on_fault(self, msg: String) -> None:
        with self._cond:
            self._faults.append(msg.data)
            self._cond.notify_all()

    def _on_state(self, msg: JointState) -> None:
        sample = cv.joint_state_from_msg(msg)
        with self._cond:
            self._latest = sample
            self._cond.notify_all()

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
        with self._cond:
            while True:
                if self._halt_gen != gen:
                    raise ExecutionError(f"robot '{self.robot_id}': motion stopped", hint="halted by the cell")
                if len(self._faults) > faults:
                    raise ExecutionError(f"robot '{self.robot_id}': {self._faults[-1]}")   # carries its hint
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

    def _grip(self, close: bool, timeout: float = 15.0) -> SetBool.Response:
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
