"""The layout's contracts, checked by reading every module's imports (no import is executed).

The layers, lowest first (DESIGN.md, "Layout"):

    vocabulary (anycell/*.py)
      <- planners, drivers, sim
      <- agent executive (agent/, agent/simulation/), network
      <- agent ROS face (agent/ros/), process supervision (agent/supervision/)
      <- CLI (anycell/cli/)

A module may import its own layer and the layers below it, never above. Inside
the middle layer the only sideways edges are planners -> sim (the planners'
world model is built by the simulator's builder, one model of the cell) and
sim -> drivers (the simulated robot implements the drivers' Robot interface).
"""

from __future__ import annotations

import ast
import os
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from tests.paths import ROOT

#: (room, layer). A module's room is the longest matching prefix of its dotted name.
ROOMS: Dict[str, int] = {
    "anycell": 0,
    "anycell.planners": 1, "anycell.drivers": 1, "anycell.sim": 1,
    "anycell.agent": 2, "anycell.agent.simulation": 2, "anycell.network": 2,
    "anycell.agent.ros": 3, "anycell.agent.supervision": 3,
    "anycell.cli": 4, "anycell.__main__": 4,
}
SIDEWAYS = {("anycell.planners", "anycell.sim"), ("anycell.sim", "anycell.drivers"), ("anycell.__main__", "anycell.cli")}
#: The repository folders that install as anycell.<name> (through the links in anycell/).
FOLDERS = ("agent", "drivers", "planners", "sim", "network")


def _modules() -> Iterator[Tuple[str, str]]:
    """(dotted name, file) for every module of the installed package, as it is installed."""
    for dirpath, dirs, names in os.walk(os.path.join(ROOT, "anycell"), followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), ROOT)[:-3]
                dotted = rel.replace(os.sep, ".")
                yield (dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted), os.path.join(dirpath, name)


def _room(module: str) -> Optional[str]:
    best = None
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            if best is None or len(room) > len(best):
                best = room
    return best


def _imports(path: str, module: str) -> List[Tuple[int, str]]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found: List[Tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if _room(f"{target}.{a.name}")
                      and f"{target}.{a.name}" in ROOMS]
    return found


def test_the_package_tree_is_found() -> None:
    names = {m for m, _ in _modules()}
    assert {"anycell.cli", "anycell.agent.ros.cell_agent_node", "anycell.sim.robot", "anycell.planners.motion",
            "anycell.drivers.opcua_client"} <= names


def test_the_folders_are_linked_into_the_one_package() -> None:
    for folder in FOLDERS:
        if not os.path.isdir(os.path.join(ROOT, folder)):
            continue
        link = os.path.join(ROOT, "anycell", folder)
        assert os.path.islink(link) and os.readlink(link) == os.path.join("..", folder), link


def test_layers_import_only_downwards() -> None:
    bad = []
    for module, path in _modules():
        room = _room(module)
        assert room is not None, module
        for line, target in _imports(path, module):
            troom = _room(target)
            if troom is None or troom == room:
                continue
            if ROOMS[troom] > ROOMS[room] or (ROOMS[troom] == ROOMS[room] and (room, troom) not in SIDEWAYS
                                              and not (troom.startswith(room + ".") or room.startswith(troom + "."))):
                bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {room} imports {target}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_module_imports_a_top_level_folder_name() -> None:
    """Only ``anycell.*`` is installed: ``import agent`` would work from the source tree and nowhere else."""
    bad = []
    for dirpath, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules", "reports")
                   and not os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            path = os.path.join(dirpath, name)
            if not (name.endswith(".py") or os.path.basename(dirpath) == "scripts"):
                continue
            try:
                tree = ast.parse(open(path, encoding="utf-8").read(), path)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    targets = [node.module or ""]
                for t in targets:
                    if t.split(".")[0] in FOLDERS:
                        bad.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: import {t}")
    assert not bad, "use anycell.<package>:\n" + "\n".join(bad)


@pytest.mark.parametrize("forbidden,allowed_rooms", [
    ("rclpy", ("anycell.agent.ros",)),
    ("pybullet", ("anycell.sim", "anycell.planners")),
])
def test_heavy_dependencies_stay_in_their_rooms(forbidden: str, allowed_rooms: Tuple[str, ...]) -> None:
    bad = []
    for module, path in _modules():
        room = _room(module) or ""
        if any(room == r or room.startswith(r + ".") for r in allowed_rooms):
            continue
        for line, target in _imports(path, module):
            if target.split(".")[0] == forbidden:
                bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {target}")
    assert not bad, f"{forbidden} outside {allowed_rooms}:\n" + "\n".join(bad)


def test_no_python_runs_between_fork_and_exec() -> None:
    """``preexec_fn`` can deadlock a multi-threaded parent's child: children arm themselves instead."""
    bad = []
    for module, path in _modules():
        text = open(path, encoding="utf-8").read()
        if "preexec_fn" in text and not module.endswith("childproc"):
            bad.append(os.path.relpath(path, ROOT))
    assert not bad, "use anycell.childproc.guarded_argv: " + ", ".join(bad)
