"""Launch one anycell cell: ``ros2 launch anycell cell.launch.py cell:=demo_cell sim:=true``.

Arguments:
  cell     a path to a cell config, or the name of one in share/anycell/cell_configs (default demo_cell)
  sim      true: also start the simulated cell (PyBullet robots' controllers); default false
  runner   the cell agent's step runner: auto, dry_run, or module:function (default auto)
  journal  the journal file (default ~/.local/state/anycell/<cell>/journal.db)
  startup  stopped (default), idle or execute: the PackML state to bring the cell to at launch
  network  true: also start the network bridge (the cell on the manufacturing network); default false
  network_keys, network_connect   the bridge's keys directory and Zenoh endpoint(s), comma-separated
  tools    true (default): also start diagnostic_aggregator (for rqt_robot_monitor) and one
           robot_state_publisher per robot (for RViz), each when its package is installed

The node list comes from ``anycell.agent.supervision.nodes.launch_node_list`` (the same function
``anycell up`` uses, and the one the tests check); this file only turns it into launch actions.
The arguments are validated first: a bad one ends the launch with its reason and a non-zero
exit. When the simulated cell *crashes* (non-zero exit), the cell is sent to Aborted; a clean
exit (Ctrl-C) sends nothing. When the cell agent exits, the launch shuts down, and a crashed
agent makes ``ros2 launch`` exit non-zero.
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from anycell.agent.supervision.nodes import launch_node_list, parse_bool, ros_tool_nodes, validate_launch_args
from anycell.errors import AnycellError


class LaunchArgumentError(Exception):
    """A bad launch argument: launch prints the message (no traceback) and exits non-zero."""


def _installed(package):
    try:
        get_package_share_directory(package)
        return True
    except PackageNotFoundError:
        return False


def _on_sim_exit(namespace, name):
    def handler(event, context):
        if event.returncode == 0:   # a clean exit (Ctrl-C, SIGTERM): nothing to abort
            return [LogInfo(msg=f"{name} exited cleanly")]
        return [LogInfo(msg=f"{name} crashed (exit {event.returncode}): sending the cell to Aborted"),
                ExecuteProcess(cmd=["ros2", "service", "call", f"{namespace}/abort", "std_srvs/srv/Trigger", "{}"],
                               output="screen")]
    return handler


def _on_agent_exit(event, context):
    if event.returncode == 0:
        return [LogInfo(msg="cell_agent exited: shutting the cell down"),
                EmitEvent(event=Shutdown(reason="cell_agent exited"))]

    def fail(_context):
        raise LaunchArgumentError(f"cell_agent died (exit {event.returncode}); see its log above")

    return [LogInfo(msg=f"cell_agent died (exit {event.returncode}): shutting the cell down"),
            OpaqueFunction(function=fail)]


def _cell_nodes(context, *args, **kwargs):
    share = get_package_share_directory("anycell")
    try:
        startup = LaunchConfiguration("startup").perform(context)
        runner = LaunchConfiguration("runner").perform(context)
        validate_launch_args(startup=startup, runner=runner)
        sim = parse_bool(LaunchConfiguration("sim").perform(context))
        tools = parse_bool(LaunchConfiguration("tools").perform(context))
        specs = launch_node_list(LaunchConfiguration("cell").perform(context), sim=sim, share_dir=share,
                                 journal=LaunchConfiguration("journal").perform(context), runner=runner,
                                 startup=startup,
                                 network={"keys": LaunchConfiguration("network_keys").perform(context),
                                          "connect": LaunchConfiguration("network_connect").perform(context)}
                                 if parse_bool(LaunchConfiguration("network").perform(context)) else None)
    except AnycellError as exc:
        raise LaunchArgumentError(str(exc)) from None
    actions = []
    for spec in specs:
        node = Node(package="anycell", executable=spec.executable, name=spec.name, namespace=spec.namespace,
                    parameters=[spec.parameters], output="screen", emulate_tty=True)
        actions.append(node)
        if spec.name == "cell_agent":
            handler = _on_agent_exit
        elif spec.name == "network_bridge":  # off the network, the cell itself works on
            handler = [LogInfo(msg="network_bridge exited: the cell is off the network")]
        else:
            handler = _on_sim_exit(spec.namespace, spec.name)
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=handler)))
    if tools:
        for tool in ros_tool_nodes(specs[0].parameters["cell"], share):
            if not _installed(tool.package):
                actions.append(LogInfo(msg=f"{tool.package} is not installed: not started"))
                continue
            params = [tool.param_file] if tool.param_file else []
            if tool.parameters:
                params.append(tool.parameters)
            actions.append(Node(package=tool.package, executable=tool.executable, name=tool.name,
                                namespace=tool.namespace or None, parameters=params, remappings=tool.remappings,
                                output="screen"))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("cell", default_value="demo_cell", description="cell config path or name"),
        DeclareLaunchArgument("sim", default_value="false", description="start the simulated cell too"),
        DeclareLaunchArgument("runner", default_value="auto", description="auto, dry_run or module:function"),
        DeclareLaunchArgument("journal", default_value="", description="journal file (default per cell)"),
        DeclareLaunchArgument("startup", default_value="stopped", description="stopped, idle or execute",
                              choices=["stopped", "idle", "execute"]),
        DeclareLaunchArgument("tools", default_value="true",
                              description="start diagnostic_aggregator and robot_state_publisher when installed"),
        DeclareLaunchArgument("network", default_value="false", description="start the network bridge too"),
        DeclareLaunchArgument("network_keys", default_value="keys", description="the bridge's keys directory"),
        DeclareLaunchArgument("network_connect", default_value="", description="Zenoh endpoint(s) to connect to"),
        OpaqueFunction(function=_cell_nodes),
    ])
