"""A :class:`~anycell.drivers.robot.Robot` that moves an arm in the PyBullet cell.

Trajectories run with joint position control (target position and velocity
from the trajectory at each fixed physics step). The driver watches two
things while it moves: the tracking error (beyond ``tracking_tolerance`` it
stops and raises) and contacts (any contact between the robot and a body other
than the part it holds, or the held part pressing into something, stops the
arm and raises :class:`ExecutionError` naming both bodies).

Grasping never teleports a part:

* parallel gripper: the fingers close under force control until they stop;
  a fixed constraint between the hand and the part is created *only if both
  fingers touch the part* (otherwise the grasp fails);
* suction: a constraint is created only if the cup touches the part's face.

The world is passed in (duck-typed: ``client``, ``robots``, ``parts``, ``step``,
``time_step``, ``body_name``), so drivers never import the simulator.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np

from anycell.errors import ExecutionError

from anycell.drivers.robot import Robot, TrajectoryLike, check_joint_names

if TYPE_CHECKING:
    from .world import SimWorld

log = logging.getLogger(__name__)

TOUCH = 0.0015          # m: a gap this small counts as the suction cup touching
FINGER_TOUCH = 0.0003   # m: a finger this close to the part is on it (pybullet reports resting contacts within it)
PINCH_COS = 0.7         # a finger's contact normal within ~45 degrees of the closing axis presses the part's side
CRASH_DEPTH = 0.004     # m: a held part pressed this deep into something is a crash
CONTACT_EVERY = 3       # physics steps between contact checks (80 Hz at the default 240 Hz step)
FINGER_SPEED = 0.03     # m/s per finger while closing: slow and even, so both fingers meet the part together
CLOSE_MARGIN = 0.5      # s beyond the fingers' full travel at FINGER_SPEED before a close counts as stuck


class SimRobot(Robot):
    """One robot of a simulated cell (``world.robots[robot_id]``)."""

    def __init__(self, world: "SimWorld", robot_id: str, *, tracking_tolerance: float = 0.05,
                 settle_tolerance: float = 0.002, check_contacts: bool = True, record: bool = False) -> None:
        if robot_id not in world.robots:
            raise ExecutionError(f"no robot '{robot_id}' in the simulated cell",
                                 hint="known: " + ", ".join(world.robots))
        self.world = world
        self.robot_id = robot_id
        self.rb = world.robots[robot_id]
        self.config = self.rb.config
        self.tracking_tolerance = tracking_tolerance
        self.settle_tolerance = settle_tolerance
        self.check_contacts = check_contacts
        self._held: Optional[str] = None
        self._constraint: Optional[int] = None
        self._grasping: Optional[int] = None    # body being grasped (contacts with it are expected)
        self._filtered: Optional[tuple] = None  # (part body, finger links) whose contacts the grasp replaces
        self.max_tracking_error = 0.0
        self.record = record
        self.trace: List[List[float]] = []     # measured joint positions at every step (when ``record``)
        self.executed_time = 0.0
        import pybullet as p

        self._p = p
        self._forces = [p.getJointInfo(self.rb.body, j, physicsClientId=world.client)[10] or 100.0
                        for j in self.rb.arm_joints]
        n = len(self.rb.arm_joints)
        self._zeros, self._kp, self._kd = [0.0] * n, [0.3] * n, [1.0] * n
        self._motor_forces = [f * 2.0 for f in self._forces]
        self._hold(self.joint_positions())

    # ------------------------------------------------------------------ state
    @property
    def joint_names(self) -> List[str]:
        return list(self.rb.joint_names)

    def joint_positions(self) -> List[float]:
        p = self._p
        return [s[0] for s in p.getJointStates(self.rb.body, self.rb.arm_joints, physicsClientId=self.world.client)]

    def joint_velocities(self) -> List[float]:
        """The arm's measured joint velocities (rad/s), in :attr:`joint_names` order."""
        p = self._p
        return [s[1] for s in p.getJointStates(self.rb.body, self.rb.arm_joints, physicsClientId=self.world.client)]

    def holding(self) -> Optional[str]:
        return self._held

    def _command(self, q: Sequence[float], qd: Optional[Sequence[float]] = None) -> None:
        p = self._p
        p.setJointMotorControlArray(self.rb.body, self.rb.arm_joints, p.POSITION_CONTROL,
                                    targetPositions=list(map(float, q)),
                                    targetVelocities=list(map(float, qd)) if qd is not None else self._zeros,
                                    forces=self._motor_forces, positionGains=self._kp, velocityGains=self._kd,
                                    physicsClientId=self.world.client)

    def _hold(self, q: Sequence[float]) -> None:
        self._command(q)

    # ------------------------------------------------------------------ motion
    def execute(self, trajectory: TrajectoryLike) -> None:
        """Run ``trajectory`` step by step; settle at its end. Raises on tracking error or contact."""
        check_joint_names(self, trajectory)
        q_now = np.asarray(self.joint_positions())
        start = np.asarray(trajectory.positions[0])
        if np.max(np.abs(q_now - start)) > self.tracking_tolerance:
            raise ExecutionError(f"robot '{self.robot_id}' is not at the trajectory's start "
                                 f"(off by {np.max(np.abs(q_now - start)):.3f} rad)", hint="replan from here")
        times = np.asarray(trajectory.times, float)
        pos = np.asarray(trajectory.positions, float)
        vel = np.asarray(trajectory.velocities, float) if trajectory.velocities else np.zeros_like(pos)
        dt = self.world.time_step
        t0 = self.world.sim_time
        n_steps = int(np.ceil(times[-1] / dt)) if len(times) > 1 else 0
        # the reference at every physics step, interpolated once up front
        ts = np.minimum(np.arange(1, n_steps + 1) * dt, times[-1])
        q_refs = np.stack([np.interp(ts, times, pos[:, j]) for j in range(pos.shape[1])], axis=1) if n_steps else pos[:0]
        qd_refs = np.stack([np.interp(ts, times, vel[:, j]) for j in range(pos.shape[1])], axis=1) if n_steps else pos[:0]
        for k in range(n_steps):
            self._command(q_refs[k], qd_refs[k])
            self.world.step()
            q = np.asarray(self.joint_positions())
            err = float(np.max(np.abs(q - q_refs[k])))
            if err > self.max_tracking_error:
                self.max_tracking_error = err
            if self.record:
                self.trace.append(q.tolist())
            if err > self.tracking_tolerance:
                self.stop()
                raise ExecutionError(f"robot '{self.robot_id}' tracking error {err:.3f} rad exceeds "
                                     f"{self.tracking_tolerance:.3f} rad at t={ts[k]:.2f} s",
                                     hint="lower safety.max_speed_fraction or check the payload")
            if self.check_contacts and k % CONTACT_EVERY == 0:
                self._check_contacts()
        self._settle(pos[-1])
        self.executed_time += self.world.sim_time - t0

    def _settle(self, q_goal: Sequence[float], timeout: float = 0.5) -> None:
        self._command(q_goal)
        steps = int(timeout / self.world.time_step)
        for _ in range(steps):
            if float(np.max(np.abs(np.asarray(self.joint_positions()) - q_goal))) < self.settle_tolerance:
                return
            self.world.step()
        err = float(np.max(np.abs(np.asarray(self.joint_positions()) - q_goal)))
        if err > 5 * self.settle_tolerance:
            raise ExecutionError(f"robot '{self.robot_id}' did not reach the trajectory's end "
                                 f"(off by {err:.4f} rad)", hint="check for an obstruction")

    def _check_contacts(self) -> None:
        p = self._p
        client = self.world.client
        held = self.world.parts.get(self._held) if self._held else None
        for c in p.getContactPoints(bodyA=self.rb.body, physicsClientId=client):
            other = c[2]
            if other == self.rb.body or other == held or other == self._grasping or c[3] in self.rb.base_links:
                continue
            if c[8] > 0.0:
                continue
            self.stop()
            raise ExecutionError(f"unexpected contact between {self.world.body_name(self.rb.body, c[3])} and "
                                 f"{self.world.body_name(other, c[4])}", hint="the cell differs from its model; "
                                 "check the cell config and any loose parts")
        if held is not None:
            for c in p.getContactPoints(bodyA=held, physicsClientId=client):
                if c[2] == self.rb.body or c[8] > -CRASH_DEPTH:
                    continue
                self.stop()
                raise ExecutionError(f"the held part {self.world.body_name(held)} hit "
                                     f"{self.world.body_name(c[2], c[4])}", hint="check the cell layout")

    def expect_contact(self, part_id: Optional[str]) -> None:
        self._grasping = self.world.parts.get(part_id) if part_id else None

    def stop(self) -> None:
        """Hold the current position."""
        self._hold(self.joint_positions())

    # ------------------------------------------------------------------ tool
    def _touching(self, link: int, body: int, gap: float = TOUCH) -> bool:
        p = self._p
        return bool(p.getClosestPoints(self.rb.body, body, gap, linkIndexA=link, physicsClientId=self.world.client))

    def _candidates(self, part_id: Optional[str]) -> List[tuple]:
        if part_id is not None:
            if part_id not in self.world.parts:
                raise ExecutionError(f"no part '{part_id}' in the simulated cell")
            return [(part_id, self.world.parts[part_id])]
        return list(self.world.parts.items())

    def grasp(self, part_id: Optional[str] = None) -> bool:
        """Close the fingers (or switch suction on); attach only on real contact. True when held."""
        p = self._p
        client = self.world.client
        if self._constraint is not None:
            raise ExecutionError(f"robot '{self.robot_id}' already holds '{self._held}'", hint="release it first")
        if self.config.tool.kind == "suction":
            cup = self.rb.cup_link if self.rb.cup_link is not None else self.rb.flange_link
            for pid, body in self._candidates(part_id):
                if self._touching(cup, body):
                    self._attach(pid, body, cup)
                    return True
            log.info("suction: the cup touches no part%s", f" '{part_id}'" if part_id else "")
            return False
        if not self.rb.finger_joints:
            raise ExecutionError(f"robot '{self.robot_id}' has no finger joints for its parallel gripper",
                                 hint="use a model with a gripper (franka_panda) or a suction tool")
        cands = self._candidates(part_id)
        self._grasping = cands[0][1] if len(cands) == 1 else None
        force = float(self.config.tool.force)
        closed = self._finger_min()
        for joint, low in zip(self.rb.finger_joints, closed):
            # slow and even, so both fingers meet the part together and do not shove it
            p.setJointMotorControl2(self.rb.body, joint, p.POSITION_CONTROL, targetPosition=low, force=force,
                                    maxVelocity=FINGER_SPEED, physicsClientId=client)
        for joint in self.rb.finger_joints:
            p.changeDynamics(self.rb.body, joint, lateralFriction=1.2, physicsClientId=client)
        q_hold = self.joint_positions()
        fq = self._finger_positions()
        # A narrow part is only reached near the end of the fingers' travel: the close must be given
        # the time of the whole travel at FINGER_SPEED (a fixed budget gave up on thin parts with the
        # fingers still moving towards them). A close that stalls early ends sooner (below).
        travel = max((f - low for f, low in zip(fq, closed)), default=0.0)
        budget = max(0.0, travel) / FINGER_SPEED + CLOSE_MARGIN
        last = None
        for step in range(int(np.ceil(budget / self.world.time_step))):
            self._hold(q_hold)
            self.world.step()
            fq = self._finger_positions()
            for pid, body in cands:
                if self._pinched(body):
                    # both fingers on the part's sides: attach, and let the constraint (not the fingers' push)
                    # carry it from now on; the fingers hold where they are
                    self._attach(pid, body, self.rb.flange_link)
                    fq = [p.getJointState(self.rb.body, j, physicsClientId=client)[0] for j in self.rb.finger_joints]
                    p.setJointMotorControlArray(self.rb.body, self.rb.finger_joints, p.POSITION_CONTROL,
                                                targetPositions=fq, forces=[force] * len(fq), physicsClientId=client)
                    for link in self.rb.finger_links:
                        p.setCollisionFilterPair(self.rb.body, body, link, -1, 0, physicsClientId=client)
                    self._filtered = (body, list(self.rb.finger_links))
                    return True
            if last is not None and max(abs(a - b) for a, b in zip(fq, last)) < 1e-6 and step > 20:
                break
            last = fq
        self._grasping = None
        log.info("gripper closed on nothing%s (fingers at %s m after %.2f s)",
                 f" (expected '{part_id}')" if part_id else "", ", ".join(f"{f:.4f}" for f in fq),
                 (step + 1) * self.world.time_step)
        self._open_fingers()
        return False

    def _pinched(self, body: int) -> bool:
        """Both fingers touch ``body`` from opposite sides, each pressing along the closing axis.

        A finger resting on the part's top (a part wider than the opening, or a gripper turned the
        wrong way) touches it too, but does not hold it: its contact normal is across the axis.
        """
        p = self._p
        client = self.world.client
        links = self.rb.finger_links
        if len(links) < 2:
            return False
        a, b = (np.asarray(p.getLinkState(self.rb.body, link, computeForwardKinematics=True,
                                          physicsClientId=client)[4]) for link in links[:2])
        axis = b - a
        norm = float(np.linalg.norm(axis))
        if norm < 1e-9:
            return False
        axis /= norm
        for link, inward in ((links[0], axis), (links[1], -axis)):
            points = p.getClosestPoints(self.rb.body, body, FINGER_TOUCH, linkIndexA=link, physicsClientId=client)
            # the normal points from the part to the finger: against the finger's inward (closing) direction
            if not any(float(np.dot(c[7], inward)) < -PINCH_COS for c in points):
                return False
        return True

    def _finger_positions(self) -> List[float]:
        p = self._p
        return [p.getJointState(self.rb.body, j, physicsClientId=self.world.client)[0] for j in self.rb.finger_joints]

    def _finger_min(self) -> List[float]:
        """Each finger joint's closed position (its lower limit, 0 when the model gives none)."""
        p = self._p
        lows = []
        for j in self.rb.finger_joints:
            info = p.getJointInfo(self.rb.body, j, physicsClientId=self.world.client)
            lo, hi = float(info[8]), float(info[9])
            lows.append(lo if lo < hi else 0.0)
        return lows

    def _attach(self, pid: str, body: int, link: int) -> None:
        p = self._p
        client = self.world.client
        ls = p.getLinkState(self.rb.body, link, computeForwardKinematics=True, physicsClientId=client)
        bp, bo = p.getBasePositionAndOrientation(body, physicsClientId=client)
        inv_p, inv_o = p.invertTransform(ls[4], ls[5])
        rel_p, rel_o = p.multiplyTransforms(inv_p, inv_o, bp, bo)
        # the constraint frames: the hand link's frame relative to its COM, and the part's COM frame
        com_inv_p, com_inv_o = p.invertTransform(ls[2], ls[3])
        parent_p, parent_o = p.multiplyTransforms(com_inv_p, com_inv_o, rel_p, rel_o)
        cid = p.createConstraint(self.rb.body, link, body, -1, p.JOINT_FIXED, [0, 0, 0], parent_p, [0, 0, 0],
                                 parentFrameOrientation=parent_o, physicsClientId=client)
        p.changeConstraint(cid, maxForce=max(50.0, 20.0 * float(self.config.tool.force)), physicsClientId=client)
        self._constraint = cid
        self._held = pid
        self._grasping = body

    def _open_fingers(self) -> None:
        p = self._p
        if not self.rb.finger_joints:
            return
        p.setJointMotorControlArray(self.rb.body, self.rb.finger_joints, p.POSITION_CONTROL,
                                    targetPositions=list(self.rb.finger_max),
                                    forces=[float(self.config.tool.force)] * len(self.rb.finger_joints),
                                    physicsClientId=self.world.client)

    def release(self) -> None:
        """Remove the grasp constraint and open the fingers (or switch suction off); the part is left to physics."""
        p = self._p
        if self._constraint is not None:
            p.removeConstraint(self._constraint, physicsClientId=self.world.client)
        self._constraint = None
        q_hold = self.joint_positions()
        self._open_fingers()
        if self.rb.finger_joints:
            for _ in range(int(0.4 / self.world.time_step)):
                self._hold(q_hold)
                self.world.step()
                fq = [p.getJointState(self.rb.body, j, physicsClientId=self.world.client)[0]
                      for j in self.rb.finger_joints]
                if min(f - m for f, m in zip(fq, self.rb.finger_max)) > -0.001:
                    break
        else:
            self.world.step(int(0.05 / self.world.time_step))
        if self._filtered is not None:
            body, links = self._filtered
            for link in links:
                p.setCollisionFilterPair(self.rb.body, body, link, -1, 1, physicsClientId=self.world.client)
            self._filtered = None
        self._held = None
        self._grasping = None
