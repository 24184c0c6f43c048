"""The launch file's plain-Python parts: argument validation, and the ROS tools it starts when installed."""

from __future__ import annotations

import os

import pytest
import yaml

from anycell.agent.supervision.nodes import ANALYZERS, ros_tool_nodes, validate_launch_args
from anycell.errors import ConfigError
from tests.paths import DEMO_CELL, ROOT


@pytest.mark.parametrize("startup,runner,field", [("bogus", "auto", "startup"), ("stopped", "not a runner", "runner"),
                                                  ("idle", "no_such_module_x:make", "runner")])
def test_bad_launch_arguments_are_refused_with_the_argument(startup, runner, field) -> None:
    with pytest.raises(ConfigError) as info:
        validate_launch_args(startup=startup, runner=runner)
    assert info.value.field == field and info.value.hint


def test_good_launch_arguments_pass() -> None:
    for runner in ("auto", "dry_run", "anycell.agent.ros.runners:make_runner_factory"):
        validate_launch_args(startup="execute", runner=runner)


def test_tools_aggregator_with_shipped_analyzers_and_one_state_publisher_per_robot() -> None:
    tools = ros_tool_nodes(DEMO_CELL)
    agg = [t for t in tools if t.package == "diagnostic_aggregator"][0]
    assert os.path.exists(agg.param_file)
    with open(agg.param_file, encoding="utf-8") as handle:
        params = yaml.safe_load(handle)["/**"]["ros__parameters"]
    groups = {k: v for k, v in params.items() if isinstance(v, dict)}
    assert {g["type"] for g in groups.values()} == {"diagnostic_aggregator/GenericAnalyzer"}
    assert any("/robot/" in g["contains"] for g in groups.values())
    rsp = [t for t in tools if t.package == "robot_state_publisher"]
    from anycell.cell import load_cell

    cell = load_cell(DEMO_CELL)
    assert [t.namespace for t in rsp] == [f"/{cell.cell.id}/{r.id}" for r in cell.robots]
    assert all("<robot" in t.parameters["robot_description"] for t in rsp)


def test_analyzer_config_is_installed_to_share_config() -> None:
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as handle:
        assert '"/config", sorted(glob.glob("launch/*.yaml"))' in handle.read()
    assert os.path.exists(os.path.join(ROOT, "launch", ANALYZERS))


def test_package_xml_names_the_dependencies_the_code_and_launch_use() -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(os.path.join(ROOT, "package.xml")).getroot()
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for name in ("rclpy", "builtin_interfaces", "ament_index_python", "launch", "launch_ros", "ros2cli",
                 "ros2service", "diagnostic_aggregator", "robot_state_publisher", "std_msgs", "std_srvs",
                 "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "visualization_msgs"):
        assert name in deps, name
