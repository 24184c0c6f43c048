"""mplib on bench_motion's problems, in a venv of its own (mplib 0.2.1 pins numpy < 2).

Run by ``bench/bench_motion.py``, never imported by anycell: reads one JSON document on stdin
(the robot's URDF, its SRDF, the planned link, its base, the cell's obstacles as boxes, the
problems as joint configurations) and prints one JSON document with, per problem, mplib's
planning time (``Planner.plan_qpos``: RRTConnect with its simplification and its own TOPP-RA
timing, as mplib is used) and the executed duration of the path it returns.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import sys
import time


def main() -> int:
    import numpy as np
    from mplib import Planner, Pose
    from mplib.collision_detection import fcl

    spec = json.load(sys.stdin)
    srdf = spec["srdf"] or next(iter(sorted(glob.glob(os.path.join(os.path.dirname(spec["urdf"]), "*.srdf")))), None)
    with contextlib.redirect_stdout(io.StringIO()):       # mplib prints as it loads (and makes an SRDF once)
        planner = Planner(urdf=spec["urdf"], srdf=srdf, move_group=spec["move_group"],
                          joint_vel_limits=spec["vel"], joint_acc_limits=spec["acc"])
    planner.set_base_pose(Pose(spec["base"]["p"], spec["base"]["q"]))
    acm = planner.planning_world.get_allowed_collision_matrix()
    for k, box in enumerate(spec["boxes"]):
        shape = fcl.CollisionObject(fcl.Box(np.asarray(box["size"], float)), Pose(box["p"], box["q"]))
        planner.planning_world.add_object(f"box{k}", shape)
        for link in spec["base_links"]:          # the base stands on the table, as anycell allows too
            acm.set_entry(link, f"box{k}", True)
    dof = len(planner.joint_limits)
    extra = list(spec["extra_joints"])
    out = []
    for prob in spec["problems"]:
        if prob.get("post"):
            post = prob["post"]
            planner.planning_world.add_object("post", fcl.CollisionObject(
                fcl.Box(np.asarray(post["size"], float)), Pose(post["p"], [1.0, 0.0, 0.0, 0.0])))
        attached = None
        if prob.get("held"):
            h = prob["held"]
            names = set(planner.planning_world.get_object_names())
            planner.update_attached_box(h["size"], Pose(h["p"], h["q"]))
            attached = next(iter(set(planner.planning_world.get_object_names()) - names), None)
        start = np.asarray(prob["start"] + extra, float)[:dof]
        goal = np.asarray(prob["goal"] + extra, float)[:dof]
        runs = []
        for _ in range(int(spec.get("repeats", 1))):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                res = planner.plan_qpos([goal], start, time_step=float(spec["time_step"]),
                                        planning_time=float(spec["timeout"]))
            dt = time.perf_counter() - t0
            ok = res.get("status") == "Success"
            runs.append({"seconds": dt, "ok": ok, "duration": float(res["duration"]) if ok else None})
        out.append(runs)
        if attached is not None:
            planner.planning_world.detach_object(attached, True)
        if prob.get("post"):
            planner.remove_object("post")
    json.dump({"results": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
