"""The node list (used by launch/cell.launch.py and anycell up), and the launch file read as text."""

from __future__ import annotations

import ast
import os

import pytest

from anycell.agent.supervision.nodes import FASTDDS_PROFILE, cell_nodes, launch_node_list, parse_bool, resolve_cell_path, ros_environment
from anycell.errors import ConfigError
from tests.paths import DEMO_CELL, KUKA_CELL, ROOT


def test_cell_only_and_sim_node_lists() -> None:
    [agent] = launch_node_list("demo_cell", sim=False)
    assert (agent.name, agent.executable, agent.namespace) == ("cell_agent", "cell_agent", "/demo_cell")
    assert agent.parameters == {"cell": DEMO_CELL, "sim": False, "runner": "auto"}
    nodes = launch_node_list(KUKA_CELL, sim=True, journal="/tmp/j.db", runner="dry_run", dry_run_scale=0.5,
                             startup="idle")
    assert [n.name for n in nodes] == ["cell_agent", "sim_cell"]
    assert all(n.namespace == "/kuka_cell" for n in nodes)
    assert nodes[0].parameters == {"cell": KUKA_CELL, "sim": True, "runner": "dry_run", "journal": "/tmp/j.db",
                                   "dry_run_scale": 0.5, "startup": "idle"}
    assert nodes[1].parameters == {"cell": KUKA_CELL}
    # every executable has its launcher in scripts/ (installed to lib/anycell for ros2 run)
    for n in nodes:
        assert os.access(os.path.join(ROOT, "scripts", n.executable), os.X_OK)


def test_argv_is_a_ros_args_command_line() -> None:
    [agent] = cell_nodes(DEMO_CELL, "demo_cell", runner="dry_run", dry_run_scale=0.1)
    argv = agent.argv("/usr/bin/python3")
    assert argv[:3] == ["/usr/bin/python3", "-m", "anycell.agent.ros.cell_agent_node"]
    assert argv[3:9] == ["--ros-args", "-r", "__ns:=/demo_cell", "-r", "__node:=cell_agent", "-p"]
    assert f"cell:={DEMO_CELL}" in argv and "sim:=false" in argv and "dry_run_scale:=0.1" in argv


def test_cell_argument_resolution(tmp_path) -> None:
    assert resolve_cell_path("demo_cell") == DEMO_CELL
    assert resolve_cell_path("demo_cell.yaml") == DEMO_CELL
    assert resolve_cell_path(DEMO_CELL) == DEMO_CELL
    share = tmp_path / "share"
    (share / "cell_configs").mkdir(parents=True)
    mine = share / "cell_configs" / "mine.yaml"
    mine.write_text(open(DEMO_CELL).read())
    assert resolve_cell_path("mine", str(share)) == str(mine)
    with pytest.raises(ConfigError, match="no cell config 'nowhere'"):
        resolve_cell_path("nowhere")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cell: {id: x}\n")
    with pytest.raises(ConfigError):
        launch_node_list(str(broken))


def test_parse_bool_and_environment() -> None:
    assert parse_bool("true") and parse_bool("1") and not parse_bool("false") and not parse_bool("")
    with pytest.raises(ConfigError):
        parse_bool("maybe")
    env = ros_environment({"PATH": "/bin"}, domain_id=42)
    assert env["ROS_DOMAIN_ID"] == "42" and env["ROS_LOCALHOST_ONLY"] == "1"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == FASTDDS_PROFILE and os.path.isfile(FASTDDS_PROFILE)
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    assert ros_environment({"ROS_DISTRO": "humble"})["FASTRTPS_DEFAULT_PROFILES_FILE"] == FASTDDS_PROFILE
    assert "ROS_LOCALHOST_ONLY" not in ros_environment({}, localhost=False)


def test_launch_file_only_turns_the_node_list_into_actions() -> None:
    """launch/launch_ros are not installable here: read the file, check what it calls and declares."""
    path = os.path.join(ROOT, "launch", "cell.launch.py")
    tree = ast.parse(open(path).read())
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"launch_node_list", "Node", "DeclareLaunchArgument", "OpaqueFunction"} <= calls
    declared = [n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Name) and n.func.id == "DeclareLaunchArgument"]
    assert declared == ["cell", "sim", "runner", "journal", "startup", "tools", "network", "network_keys",
                        "network_connect"]
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    compile(open(path).read(), path, "exec")
