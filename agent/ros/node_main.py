"""Start-up and shut-down shared by the ``main()`` of the anycell ROS 2 nodes.

Each node is started with ``--ros-args -p cell:=<config>``. Its namespace comes from the cell id,
so the parameters are read by a short-lived bootstrap node before the real node exists. SIGTERM
(``anycell up``, launch) ends a node the way Ctrl-C does, and teardown runs in one order: the
node's own clean-up, the executor, the node, then rclpy.

Only rclpy APIs that ROS 2 Humble has are used (see DESIGN.md: no context-manager init, no try-shutdown).
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from anycell.errors import AnycellError

if TYPE_CHECKING:
    from anycell.cell import CellConfig


def init_with_cell(prog: str, bootstrap_name: str, defaults: Sequence[Tuple[str, Any]],
                   argv: Optional[List[str]] = None) -> Optional[Tuple[Dict[str, Any], "CellConfig"]]:
    """Initialise rclpy, read the node's parameters and load the cell config they name.

    Returns ``(params, cell)``, or None after printing why to stderr and shutting rclpy down:
    no ``cell`` parameter, or a config that does not load. ``defaults`` lists every parameter
    name with its default, ``cell`` among them. The config module is imported only here, once
    rclpy is up.
    """
    rclpy.init(args=argv if argv is not None else sys.argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # raises KeyboardInterrupt
    bootstrap = Node(bootstrap_name)
    params = {name: bootstrap.declare_parameter(name, default).value for name, default in defaults}
    bootstrap.destroy_node()
    if not params["cell"]:
        print(f"{prog}: set the cell config: --ros-args -p cell:=cell_configs/demo_cell.yaml", file=sys.stderr)
        rclpy.shutdown()
        return None
    from anycell.cell import load_cell

    try:
        cell = load_cell(str(params["cell"]))
    except AnycellError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return None
    return params, cell


def spin_until_shutdown(node: Node, num_threads: int, cleanup: Callable[[], None]) -> None:
    """Spin ``node`` on a multi-threaded executor until Ctrl-C, SIGTERM or an external shutdown.

    Then, even if spinning failed: ``cleanup()`` (the node's own resources), the executor, the
    node, and rclpy if it is still up.
    """
    executor = MultiThreadedExecutor(num_threads=num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        cleanup()
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
