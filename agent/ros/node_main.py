"""Start-up and shut-down shared by the ``main()`` of the anycell ROS 2 nodes.

Each node is started with ``--ros-args -p cell:=<config>``. Its namespace comes from the cell id,
so the parameters are read by a short-lived bootstrap node before the real node exists. SIGTERM
(``anycell up``, launch) ends a node the way Ctrl-C does, and teardown runs in one order: the
node's own clean-up, the executor, the node, then rclpy.

Signals are ours, not rclpy's: rclpy is initialised without its signal handlers
(``SignalHandlerOptions.NO``), because its SIGINT handler shuts the context down *first*, and a
stop trajectory published after that fails ("publisher's context is invalid"). Our handler runs
the registered halt (:func:`on_signal`: robots stopped, machine stops sent) while every
publisher still works, then ends the spin; a second signal ends it at once.

Inside a node, the core's ``logging`` records (drivers, planners, the executive)
go to the node's ROS logger (:func:`forward_logging`): the console, the ROS log
files and ``/rosout`` carry them, so rqt_console and bags see driver faults and
reconnects.

Only rclpy APIs that ROS 2 Humble has are used (see DESIGN.md: no context-manager init, no try-shutdown).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from anycell.errors import AnycellError
from anycell.heap import settle as settle_heap   # also the tests' and bench_halt's name for it

if TYPE_CHECKING:
    from anycell.cell import CellConfig

log = logging.getLogger(__name__)

_halt: List[Callable[[str], None]] = []
_signalled = threading.Event()
#: (signal name, monotonic time the signal arrived, monotonic time the halt returned)
last_signal: Dict[str, Any] = {}


def on_signal(halt: Callable[[str], None]) -> None:
    """Run ``halt(reason)`` first when SIGINT or SIGTERM arrives (before anything shuts down)."""
    _halt.append(halt)


def signalled() -> bool:
    """True once SIGINT or SIGTERM arrived (a clean, operator-requested exit)."""
    return _signalled.is_set()


def _handle(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    first = not _signalled.is_set()
    _signalled.set()
    if first:
        t0 = time.monotonic()
        for halt in list(_halt):
            try:
                halt(f"{name} received")
            except Exception:  # noqa: BLE001 - the rest must still halt
                log.exception("halt on %s failed", name)
        last_signal.update(signal=name, at=t0, halted=time.monotonic())
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM run the halt, then raise KeyboardInterrupt in the main thread."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def _wake_on_signals(node: Node) -> None:
    """Make a signal wake the executor, so our Python handler runs at once.

    Without rclpy's own handlers, a signal only sets CPython's flag: the handler runs when the main
    thread next executes Python, and a main thread blocked in the executor's wait (a node with no
    timers, like the idle sim_cell) would never do so and never exit on SIGTERM. CPython writes the
    signal number to the wakeup fd; a small thread reading it triggers a guard condition, which
    wakes the wait set.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    guard = node.create_guard_condition(lambda: None)
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)

    def pump() -> None:
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            try:
                guard.trigger()
            except Exception:  # noqa: BLE001 - the node is gone: nothing left to wake
                return

    threading.Thread(target=pump, name="signal-wakeup", daemon=True).start()


def init_rclpy(args: Optional[List[str]] = None) -> None:
    """``rclpy.init`` without rclpy's signal handlers (Humble and later have SignalHandlerOptions)."""
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:   # pragma: no cover - before Humble
        rclpy.init(args=args)
    install_signal_handlers()


#: The root logger's handlers from before :func:`forward_logging`, put back by :func:`restore_logging`.
_saved_handlers: Optional[List[logging.Handler]] = None


class RosLogHandler(logging.Handler):
    """A :mod:`logging` handler that writes each record to a ROS node's logger.

    The node's logger prints to the console, writes the ROS log file and
    publishes on ``/rosout``; the record's logger name goes in front of the
    message (``[anycell.drivers.opcua_client] ...``), so a fault says where it
    came from. Levels map one to one (CRITICAL is ROS FATAL).
    """

    def __init__(self, node: Node, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.ros_logger = node.get_logger()
        self.setFormatter(logging.Formatter("[%(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never take the node down
            self.handleError(record)


def forward_logging(node: Node) -> RosLogHandler:
    """Send every ``logging`` record of this process to ``node``'s ROS logger (and so to ``/rosout``).

    The handler replaces the root logger's own (the console output now comes
    from ROS, in its format, once); :func:`restore_logging` undoes it, and
    :func:`spin_until_shutdown` calls that before the node goes away.
    """
    global _saved_handlers
    root = logging.getLogger()
    if _saved_handlers is None:
        _saved_handlers = list(root.handlers)
    handler = RosLogHandler(node)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    return handler


def restore_logging() -> None:
    """Put back the root logger's handlers from before :func:`forward_logging` (no-op if it was not called)."""
    global _saved_handlers
    if _saved_handlers is None:
        return
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, RosLogHandler):
            root.removeHandler(old)
    for old in _saved_handlers:
        root.addHandler(old)
    _saved_handlers = None


def init_with_cell(prog: str, bootstrap_name: str, defaults: Sequence[Tuple[str, Any]],
                   argv: Optional[List[str]] = None) -> Optional[Tuple[Dict[str, Any], "CellConfig"]]:
    """Initialise rclpy, read the node's parameters and load the cell config they name.

    Returns ``(params, cell)``, or None after printing why to stderr and shutting rclpy down:
    no ``cell`` parameter, or a config that does not load. ``defaults`` lists every parameter
    name with its default, ``cell`` among them. The config module is imported only here, once
    rclpy is up.
    """
    init_rclpy(argv if argv is not None else sys.argv)
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


def make_executor(num_threads: int = 1, **kw: Any) -> Executor:
    """The executor of a node: single-threaded unless its callbacks block (then ``num_threads`` > 1).

    rclpy's MultiThreadedExecutor re-polls an entity whose callback is queued but not yet taken,
    so it spins hot on the GIL while a message waits: measured, 4 threads idling with one
    50 Hz subscription cost 22 % of a core (5.7 % single-threaded) and kept other Python
    threads of the process from running for up to 1.4 s, long enough to delay an e-stop's
    stop trajectory. A node whose callbacks never block (they hand work to threads of their
    own) spins single-threaded.
    """
    if num_threads <= 1:
        return SingleThreadedExecutor(**kw)
    return MultiThreadedExecutor(num_threads=num_threads, **kw)


def spin_until_shutdown(node: Node, num_threads: int, cleanup: Callable[[], None]) -> None:
    """Spin ``node`` (:func:`make_executor`) until Ctrl-C, SIGTERM or an external shutdown.

    The heap is settled first (:func:`settle_heap`). Then, even if spinning failed: ``cleanup()``
    (the node's own resources), the executor, the node, and rclpy if it is still up.
    """
    executor = make_executor(num_threads)
    executor.add_node(node)
    _wake_on_signals(node)
    settle_heap()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            cleanup()
        except KeyboardInterrupt:   # a second signal during clean-up: go on tearing down
            pass
        try:
            executor.shutdown(timeout_sec=2.0)
        except KeyboardInterrupt:
            pass
        restore_logging()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
