"""Launch one anycell cell: ``ros2 launch anycell cell.launch.py cell:=demo_cell sim:=true``.

Arguments:
  cell     a path to a cell config, or the name of one in share/anycell/cell_configs (default demo_cell)
  sim      true: also start the simulated cell (PyBullet robots' controllers); default false
  runner   the cell agent's step runner: auto, dry_run, or module:function (default auto)
  journal  the journal file (default ~/.local/state/anycell/<cell>/journal.db)
  startup  stopped (default), idle or execute: the PackML state to bring the cell to at launch

The node list comes from ``anycell.agent.supervision.nodes.launch_node_list`` (the same function
``anycell up`` uses, and the one the tests check); this file only turns it
into launch actions. When the simulated cell exits, the cell is sent to
Aborted (the same rule as ``anycell up``); when the cell agent exits, the
launch shuts down.
"""

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from anycell.agent.supervision.nodes import launch_node_list, parse_bool


def _cell_nodes(context, *args, **kwargs):
    specs = launch_node_list(
        LaunchConfiguration("cell").perform(context),
        sim=parse_bool(LaunchConfiguration("sim").perform(context)),
        share_dir=get_package_share_directory("anycell"),
        journal=LaunchConfiguration("journal").perform(context),
        runner=LaunchConfiguration("runner").perform(context),
        startup=LaunchConfiguration("startup").perform(context),
    )
    actions = []
    for spec in specs:
        node = Node(package="anycell", executable=spec.executable, name=spec.name, namespace=spec.namespace,
                    parameters=[spec.parameters], output="screen", emulate_tty=True)
        actions.append(node)
        if spec.name == "cell_agent":
            on_exit = [LogInfo(msg="cell_agent exited: shutting the cell down"),
                       EmitEvent(event=Shutdown(reason="cell_agent exited"))]
        else:
            on_exit = [LogInfo(msg=f"{spec.name} exited: sending the cell to Aborted"),
                       ExecuteProcess(cmd=["ros2", "service", "call", f"{spec.namespace}/abort",
                                           "std_srvs/srv/Trigger", "{}"], output="screen")]
        actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit)))
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("cell", default_value="demo_cell", description="cell config path or name"),
        DeclareLaunchArgument("sim", default_value="false", description="start the simulated cell too"),
        DeclareLaunchArgument("runner", default_value="auto", description="auto, dry_run or module:function"),
        DeclareLaunchArgument("journal", default_value="", description="journal file (default per cell)"),
        DeclareLaunchArgument("startup", default_value="stopped", description="stopped, idle or execute"),
        OpaqueFunction(function=_cell_nodes),
    ])
