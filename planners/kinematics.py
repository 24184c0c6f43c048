"""Forward and inverse kinematics of a cell robot, from its URDF (through a PyBullet DIRECT client).

The tool centre point (TCP) is the flange link's frame composed with the tool's
``tcp`` offset from the cell config. IK is damped least squares on the
geometric Jacobian, clamped to the joint limits, from several seeds (the
current configuration first, then home, then a fixed pseudo-random set, so the
result is deterministic). A solution counts only within ``POS_TOL`` and
``ANG_TOL``; among the solutions found the one closest to the current
configuration wins.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from anycell.cell import CellConfig
from anycell.errors import UnreachableError
from anycell.geometry import Pose, matrix_to_quat, quat_to_matrix

log = logging.getLogger(__name__)

#: Joint values: a list from a document or a numpy array from the solvers.
JointVector = Union[Sequence[float], np.ndarray]

POS_TOL = 0.0005        # m: IK is asked for half the 1 mm it promises
ANG_TOL = np.radians(0.25)


def rotation_matrix(q: Sequence[float]) -> np.ndarray:
    """:func:`anycell.geometry.quat_to_matrix` as a numpy array (for the solvers' matrix products)."""
    return np.array(quat_to_matrix(q))


def rotation_error(r_target: np.ndarray, r_now: np.ndarray) -> np.ndarray:
    """The rotation vector (axis * angle, world frame) that takes ``r_now`` to ``r_target``."""
    r = r_target @ r_now.T
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-9:
        return 0.5 * axis
    if np.pi - angle < 1e-4:
        # near pi: axis from the symmetric part
        w, v = np.linalg.eigh((r + r.T) / 2)
        return v[:, int(np.argmax(w))] * angle
    return axis * (angle / (2 * np.sin(angle)))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation_matrix(pose.quaternion)
    t[:3, 3] = pose.position
    return t


def matrix_to_pose(t: np.ndarray) -> Pose:
    return Pose.from_pq(t[:3, 3].tolist(), matrix_to_quat(t[:3, :3]))


class Kinematics:
    """FK/IK of one robot of a cell. Pass ``client``/``body`` to share a PyBullet world, else it makes its own."""

    def __init__(self, cell: CellConfig, robot_id: str, *, client: Optional[int] = None, body=None) -> None:  # noqa: ANN001
        import pybullet as p

        from anycell.sim.builder import home_configuration, load_robot

        self.cell = cell
        self.config = cell.robot(robot_id)
        self._own = client is None
        if client is None:
            client = p.connect(p.DIRECT)
            body = load_robot(client, self.config)
        self.client = client
        self.body = body
        self.dof = len(body.arm_joints)
        self.joint_names = list(body.joint_names)
        self.lower = np.asarray(body.lower)
        self.upper = np.asarray(body.upper)
        self.home = np.asarray(home_configuration(body))
        self._movable = [j for j in range(p.getNumJoints(body.body, physicsClientId=client))
                         if p.getJointInfo(body.body, j, physicsClientId=client)[2] != p.JOINT_FIXED]
        self._arm_pos = [self._movable.index(j) for j in body.arm_joints]
        self.tcp = pose_to_matrix(self.config.tool.tcp)
        st = p.getLinkState(body.body, body.flange_link, physicsClientId=client)
        inertial = np.eye(4)
        inertial[:3, :3] = rotation_matrix(st[3])
        inertial[:3, 3] = st[2]
        self._tcp_in_com = np.linalg.inv(inertial) @ self.tcp   # calculateJacobian wants the COM frame
        infos = [p.getJointInfo(body.body, j, physicsClientId=client) for j in body.arm_joints]
        self._axes = [np.asarray(i[13], dtype=float) for i in infos]
        self._prismatic = [i[2] == p.JOINT_PRISMATIC for i in infos]
        rng = np.random.default_rng(7)
        self._seeds = [self.lower + (self.upper - self.lower) * rng.random(self.dof) for _ in range(24)]

    # ------------------------------------------------------------------ FK
    def set(self, q: JointVector) -> None:
        import pybullet as p

        p.resetJointStatesMultiDof(self.body.body, self.body.arm_joints, [[float(v)] for v in q],
                                   physicsClientId=self.client)

    def _flange(self) -> np.ndarray:
        import pybullet as p

        st = p.getLinkState(self.body.body, self.body.flange_link, computeForwardKinematics=True,
                            physicsClientId=self.client)
        t = np.eye(4)
        t[:3, :3] = rotation_matrix(st[5])
        t[:3, 3] = st[4]
        return t

    def fk_matrix(self, q: JointVector) -> np.ndarray:
        """The TCP as a 4x4 transform in the cell frame."""
        self.set(q)
        return self._flange() @ self.tcp

    def fk(self, q: JointVector) -> Pose:
        """The TCP pose in the cell frame for joint positions ``q``."""
        return matrix_to_pose(self.fk_matrix(q))

    def jacobian(self, q: JointVector) -> np.ndarray:
        """The 6 x dof geometric Jacobian of the TCP (linear rows first), cell frame, from the joint axes."""
        import pybullet as p

        self.set(q)
        links = list(self.body.arm_joints) + [self.body.flange_link]
        states = p.getLinkStates(self.body.body, links, computeForwardKinematics=True, physicsClientId=self.client)
        fl = states[-1]
        flange = np.eye(4)
        flange[:3, :3] = rotation_matrix(fl[5])
        flange[:3, 3] = fl[4]
        tip = (flange @ self.tcp)[:3, 3]
        jac = np.zeros((6, self.dof))
        for i, st in enumerate(states[:-1]):
            axis = rotation_matrix(st[5]) @ self._axes[i]
            origin = np.asarray(st[4])
            if self._prismatic[i]:
                jac[:3, i] = axis
            else:
                r = tip - origin
                jac[0, i] = axis[1] * r[2] - axis[2] * r[1]
                jac[1, i] = axis[2] * r[0] - axis[0] * r[2]
                jac[2, i] = axis[0] * r[1] - axis[1] * r[0]
                jac[3:, i] = axis
        return jac

    # ------------------------------------------------------------------ IK
    def _solve(self, target: np.ndarray, seed: np.ndarray, iters: int = 120) -> Optional[np.ndarray]:
        q = np.clip(seed.astype(float), self.lower, self.upper)
        for _ in range(iters):
            now = self.fk_matrix(q)
            dp = target[:3, 3] - now[:3, 3]
            dr = rotation_error(target[:3, :3], now[:3, :3])
            if np.linalg.norm(dp) < POS_TOL and np.linalg.norm(dr) < ANG_TOL:
                return q
            err = np.concatenate([dp, dr])
            jac = self.jacobian(q)
            lam = 0.01 + 0.5 * min(1.0, float(np.linalg.norm(err)))
            dq = jac.T @ np.linalg.solve(jac @ jac.T + (lam ** 2) * np.eye(6), err)
            step = np.max(np.abs(dq))
            if step > 0.4:
                dq *= 0.4 / step
            q = np.clip(q + dq, self.lower, self.upper)
        return None

    def ik(self, target: Pose, q_current: Optional[JointVector] = None, *,
           accept: Optional[Callable[[np.ndarray], bool]] = None, max_solutions: int = 1,
           name: Optional[str] = None, prefer: Optional[Callable[[np.ndarray], float]] = None) -> List[float]:
        """Joint positions that put the TCP at ``target`` (cell frame), closest to ``q_current``.

        ``accept`` filters solutions (the planner passes its collision check). Tries the current
        configuration first (its solution, when there is one, is the nearby branch), then home and
        fixed pseudo-random seeds, keeping the closest of up to three solutions (``max_solutions``
        when more). ``prefer`` (lower is better) ranks the solutions found before their distance
        from ``q_current``: the planner's elbow clearance beside other robots.
        Raises :class:`UnreachableError` naming the target when none is found.
        """
        t = pose_to_matrix(target)
        cur = np.asarray(q_current if q_current is not None else self.home, dtype=float)
        found: List[np.ndarray] = []
        rejected = 0
        for k, seed in enumerate([cur, self.home] + self._seeds):
            q = self._solve(t, seed)
            if q is None:
                continue
            if accept is not None and not accept(q):
                rejected += 1
                continue
            found.append(q)
            # a solution reached from the current configuration is the nearby one; one found from
            # another seed may be a distant branch, so collect a few and keep the closest
            if (k == 0 and prefer is None and len(found) >= max_solutions) or len(found) >= max(3, max_solutions):
                break
        if not found:
            label = name or "target"
            where = f"xyz={[round(v, 4) for v in target.xyz]} rpy={[round(v, 3) for v in target.rpy]}"
            if rejected:
                from anycell.errors import CollisionError

                raise CollisionError(f"robot '{self.config.id}': every IK solution for {label} {where} collides",
                                     hint="move the target away from obstacles or change the approach")
            raise UnreachableError(f"robot '{self.config.id}' cannot reach {label} {where}",
                                   hint="move the station closer to the robot or change the tool orientation")
        if prefer is not None:
            rank = {id(q): prefer(q) for q in found}
            best = min(found, key=lambda q: (rank[id(q)], float(np.sum((q - cur) ** 2))))
        else:
            best = min(found, key=lambda q: float(np.sum((q - cur) ** 2)))
        return best.tolist()

    def link_positions(self, q: JointVector) -> np.ndarray:
        """The world positions of the arm's links' frames (one row per arm joint's child link) at ``q``."""
        import pybullet as p

        self.set(q)
        states = p.getLinkStates(self.body.body, list(self.body.arm_joints), computeForwardKinematics=True,
                                 physicsClientId=self.client)
        return np.asarray([st[4] for st in states], dtype=float)

    def elbow(self, q: JointVector) -> np.ndarray:
        """The arm's elbow at ``q``: the link frame farthest from the line from the base to the TCP
        (any serial arm; for a 7-joint arm the null space swings it about that line)."""
        links = self.link_positions(q)
        tcp = self.fk_matrix(q)[:3, 3]
        base = links[0]
        axis = tcp - base
        n = float(np.linalg.norm(axis))
        if n < 1e-9:
            return links[len(links) // 2]
        u = axis / n
        off = links - base
        perp = off - np.outer(off @ u, u)
        return links[int(np.argmax(np.linalg.norm(perp, axis=1)))]

    def close(self) -> None:
        import pybullet as p

        if self._own and self.client >= 0:
            p.disconnect(physicsClientId=self.client)
            self.client = -1
