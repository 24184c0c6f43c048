"""The cell's node list, as plain data: one function that the launch file and ``anycell up`` both use.

No rclpy and no launch here, so it is unit-tested on any machine. A
:class:`NodeSpec` says what to start (the executable installed in
``lib/anycell`` for ``ros2 run``/launch, or the Python module for
``anycell up``), under which namespace and name, with which parameters.

Also here: :func:`ros_environment`, the environment a cell's processes (and
the tests) get for quick, local-only discovery.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from anycell.resources import resolve_cell_path

PACKAGE = "anycell"
HERE = os.path.dirname(os.path.abspath(__file__))
FASTDDS_PROFILE = os.path.join(HERE, "fastdds_profile.xml")


@dataclass
class NodeSpec:
    """One process of the cell."""

    name: str                      # ROS node name (also the output prefix in `anycell up`)
    executable: str                # in lib/anycell (ros2 run anycell <executable>) and a console script
    module: str                    # `python -m <module>` for anycell up
    namespace: str                 # "/<cell_id>"
    parameters: Dict[str, Any] = field(default_factory=dict)
    required: bool = True          # the cell cannot work without it: its crash aborts the cell

    def ros_args(self) -> List[str]:
        """``--ros-args`` for a plain process: namespace, node name and each parameter."""
        args = ["--ros-args", "-r", f"__ns:={self.namespace}", "-r", f"__node:={self.name}"]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_param_text(value)}"]
        return args

    def argv(self, python: Optional[str] = None) -> List[str]:
        """The full command line for ``anycell up`` (the module run by this Python)."""
        return [python or sys.executable, "-m", self.module] + self.ros_args()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cell_nodes(cell_path: str, cell_id: str, *, sim: bool = False, journal: str = "", runner: str = "auto",
               dry_run_scale: float = 1.0, startup: str = "stopped",
               network: Optional[Dict[str, Any]] = None, sim_machines: str = "") -> List[NodeSpec]:
    """The nodes of one cell: the cell agent, in sim mode the simulated cell, and with ``network`` (the
    bridge's parameters: keys, connect, ...) the bridge that puts the cell on the manufacturing network.

    ``cell_path`` must already be resolved (see :func:`resolve_cell_path`);
    ``cell_id`` is the cell's id from its config (the namespace); ``sim_machines`` names the file in
    which ``anycell up`` hands the simulated machines it started over to the agent.
    """
    ns = "/" + cell_id
    agent_params: Dict[str, Any] = {"cell": cell_path, "sim": sim, "runner": runner}
    if journal:
        agent_params["journal"] = journal
    if runner == "dry_run":
        agent_params["dry_run_scale"] = float(dry_run_scale)
    if startup != "stopped":
        agent_params["startup"] = startup
    if sim_machines:
        agent_params["sim_machines"] = sim_machines
    nodes = [NodeSpec(name="cell_agent", executable="cell_agent", module="anycell.agent.ros.cell_agent_node",
                      namespace=ns, parameters=agent_params)]
    if sim:
        nodes.append(NodeSpec(name="sim_cell", executable="sim_cell", module="anycell.agent.ros.sim_node",
                              namespace=ns, parameters={"cell": cell_path}))
    if network is not None:   # not required: losing the bridge takes the cell off the market, not down
        nodes.append(NodeSpec(name="network_bridge", executable="network_bridge",
                              module="anycell.agent.ros.network_bridge", namespace=ns,
                              parameters={"cell": cell_path,
                                          **{k: v for k, v in network.items() if v not in ("", None)}},
                              required=False))
    return nodes


def launch_node_list(cell: str, sim: bool = False, share_dir: Optional[str] = None, **options: Any) -> List[NodeSpec]:
    """What ``cell.launch.py`` starts for ``cell:=<path or name> sim:=<bool>`` (and ``anycell up``).

    Resolves the cell argument, loads the config (so a broken config fails
    here, with its file and line, before any node starts) and returns
    :func:`cell_nodes` for it.
    """
    from anycell.cell import load_cell

    path = resolve_cell_path(cell, share_dir)
    config = load_cell(path)
    return cell_nodes(path, config.cell.id, sim=sim, **options)


STARTUPS = ("stopped", "idle", "execute")
ANALYZERS = "diagnostic_analyzers.yaml"


def validate_launch_args(*, startup: str, runner: str) -> None:
    """Refuse launch arguments the nodes would reject later; ConfigError naming the argument."""
    from anycell.errors import ConfigError

    if startup not in STARTUPS:
        raise ConfigError(f"startup:={startup} is not one of {', '.join(STARTUPS)}", field="startup",
                          hint="startup:=stopped (default), idle or execute")
    if runner not in ("auto", "dry_run", "none"):
        module, sep, func = runner.partition(":")
        ident = all(part.isidentifier() for part in module.split(".")) if module else False
        if not sep or not ident or not func.isidentifier():
            raise ConfigError(f"runner:={runner} is not auto, dry_run or module:function", field="runner",
                              hint="runner:=dry_run to rehearse, or runner:=my_pkg.runners:make_runner_factory")
        import importlib.util

        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(f"runner:={runner}: no module '{module}' in this install", field="runner",
                              hint="install the module, or use runner:=auto")


@dataclass
class ToolNode:
    """A standard ROS tool the launch file starts when its package is installed."""

    package: str
    executable: str
    name: str
    namespace: str
    parameters: Dict[str, Any] = field(default_factory=dict)
    remappings: List[tuple] = field(default_factory=list)
    param_file: Optional[str] = None


def ros_tool_nodes(cell_path: str, share_dir: Optional[str] = None) -> List[ToolNode]:
    """diagnostic_aggregator (for rqt_robot_monitor, with the analyzers shipped in share/anycell/config)
    and one robot_state_publisher per robot (its URDF, its joint states), for RViz."""
    from anycell.cell import load_cell

    cell = load_cell(cell_path)
    ns = "/" + cell.cell.id
    config_dir = (os.path.join(share_dir, "config") if share_dir
                  else os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "launch"))
    tools = [ToolNode(package="diagnostic_aggregator", executable="aggregator_node", name="diagnostic_aggregator",
                      namespace="", param_file=os.path.normpath(os.path.join(config_dir, ANALYZERS)))]
    for robot in cell.robots:
        try:
            from anycell.sim.builder import robot_urdf

            with open(robot_urdf(robot), "r", encoding="utf-8") as handle:
                urdf = handle.read()
        except Exception:  # noqa: BLE001 - RViz is a view; the cell runs without it
            continue
        remap = []
        if robot.joint_states_topic:
            topic = robot.joint_states_topic
            remap.append(("joint_states", topic if topic.startswith("/") else f"{ns}/{topic}"))
        tools.append(ToolNode(package="robot_state_publisher", executable="robot_state_publisher",
                              name="robot_state_publisher", namespace=f"{ns}/{robot.id}",
                              parameters={"robot_description": urdf, "frame_prefix": f"{robot.id}/"},
                              remappings=remap))
    return tools


def parse_bool(text: str) -> bool:
    """A launch argument as a bool (true/false, 1/0, yes/no, on/off)."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    from anycell.errors import ConfigError

    raise ConfigError(f"'{text}' is not a boolean", hint="true or false")


def ros_environment(base: Optional[Dict[str, str]] = None, domain_id: Optional[int] = None,
                    localhost: bool = True, legacy_profile_variable: Optional[bool] = None) -> Dict[str, str]:
    """An environment for a cell's processes: quick discovery profile, optional domain and loopback only.

    Fast DDS 3 (Jazzy, Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2
    (Humble) reads FASTRTPS_DEFAULT_PROFILES_FILE, which Fast DDS 3 still
    honours but warns about. ``legacy_profile_variable`` sets the old one too;
    by default only when ROS_DISTRO says humble or iron.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", FASTDDS_PROFILE)
    if legacy_profile_variable is None:
        legacy_profile_variable = env.get("ROS_DISTRO", "") in ("humble", "iron")
    if legacy_profile_variable:
        env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", FASTDDS_PROFILE)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    if localhost:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"   # Jazzy and later
        env["ROS_LOCALHOST_ONLY"] = "1"                        # Humble
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
