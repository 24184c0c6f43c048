"""ROS 2 Humble compatibility: no rclpy API that Humble lacks (DESIGN.md's list) in the ROS code.

An AST scan (no rclpy needed), over agent/ros, agent/supervision, launch and the tests. Docstrings and
comments may name the APIs (to say why they are avoided); calls and keyword arguments may not.
"""

from __future__ import annotations

import ast
import os
from typing import List

from tests.paths import ROOT

SCANNED = ("agent/ros", "agent/supervision", "launch", "anycell/cli", "tests")

#: method or function names that do not exist on Humble
BANNED_CALLS = {
    "get_publisher_count": "Subscription.get_publisher_count() is Iron+: use node.count_publishers(topic)",
    "try_shutdown": "rclpy.try_shutdown() is Iron+: use `if rclpy.ok(): rclpy.shutdown()`",
    "wait_for_node": "Node.wait_for_node() is Iron+",
}
#: keyword arguments Humble's versions do not take
BANNED_KEYWORDS = {
    ("call", "timeout_sec"): "Client.call(timeout_sec=) is Iron+: use call_async and wait",
    ("create_timer", "autostart"): "create_timer(autostart=) is Jazzy+",
}
BANNED_MODULES = {"rclpy.event_handler": "use rclpy.qos_event on Humble"}


def _files() -> List[str]:
    out = []
    for top in SCANNED:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return out


def _problems(path: str) -> List[str]:
    if path.endswith("test_humble_api.py"):
        return []
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in BANNED_CALLS:
                found.append(f"{path}:{node.lineno}: {BANNED_CALLS[name]}")
            for kw in node.keywords:
                if (name, kw.arg) in BANNED_KEYWORDS:
                    found.append(f"{path}:{node.lineno}: {BANNED_KEYWORDS[(name, kw.arg)]}")
            if name == "QoSProfile" and node.args:
                found.append(f"{path}:{node.lineno}: QoSProfile with positional arguments: use QoSProfile(depth=...)")
        elif isinstance(node, ast.With):
            for item in node.items:
                expr = item.context_expr
                if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute)
                        and expr.func.attr == "init" and getattr(expr.func.value, "id", "") == "rclpy"):
                    found.append(f"{path}:{node.lineno}: `with rclpy.init()` is Iron+")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for n in names:
                if n in BANNED_MODULES:
                    found.append(f"{path}:{node.lineno}: {n}: {BANNED_MODULES[n]}")
    return found


def test_no_api_humble_lacks() -> None:
    problems = [p for f in _files() for p in _problems(f)]
    assert not problems, "APIs ROS 2 Humble lacks:\n" + "\n".join(problems)


def test_the_check_finds_a_call_that_comes_back(tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(sub, node, cli):\n    sub.get_publisher_count()\n    cli.call(None, timeout_sec=1)\n"
                   "    node.create_timer(1.0, f, autostart=False)\n")
    assert len(_problems(str(bad))) == 3
