"""One machine interface for every protocol, and the factory that picks the driver.

The executor, the machine node and the CLI only see :class:`Machine`. Whether the machine
speaks GRBL or Marlin over a serial port or OPC UA over TCP is the driver's business. The API
is synchronous because the executor is: ``run_program`` blocks until the program has finished
(or failed), while ``hold``/``resume``/``stop`` may be called from another thread during it.

PackML state names (ISA-TR88 / OPC 30050) are the common vocabulary of ``state()``:
``Idle``, ``Execute``, ``Held``, ``Suspended``, ``Complete``, ``Stopped``, ``Aborted``.

Every error is an :class:`anycell.errors.DriverError` subclass: ``DriverTimeout``,
``ConnectionLost``, ``MachineFault`` or ``ProgramRejected``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from anycell.cell import MachineConfig
from anycell.errors import ConfigError
from anycell.job import Program
from anycell.packml_model import STATES


@dataclass(frozen=True)
class Progress:
    """How far a running program is.

    ``done``/``total`` count G-code lines the firmware confirmed (serial: Marlin's executed lines,
    GRBL's lines accepted into its planner), or are a cycle fraction scaled to 0..1000 (OPC UA,
    ``unit='permille'``). ``fraction`` is 0..1.
    """

    done: int
    total: int
    unit: str = "lines"
    state: str = "Execute"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class ProgramResult:
    """What happened to a program.

    ``status`` is ``complete`` or ``stopped`` (a ``stop()`` from the operator); failures are
    raised, not returned. For serial machines ``lines_acknowledged`` counts the firmware's
    ``ok`` replies and ``lines_executed`` the lines that really ran: GRBL acknowledges a line when it
    enters the planner, so lines flushed by a stop or a reset were acknowledged but never ran
    (``details["lines_flushed"]``). A complete program has every line executed.
    """

    status: str
    lines_total: int = 0
    lines_sent: int = 0
    lines_acknowledged: int = 0
    duration: float = 0.0
    details: Dict[str, Any] = field(default_factory=dict)
    lines_executed: Optional[int] = None

    @property
    def completed(self) -> bool:
        return self.status == "complete"


ProgressCallback = Callable[[Progress], None]


class Machine(abc.ABC):
    """A machine anycell can drive. See the module docstring for the contract."""

    machine_id: str = ""
    protocol: str = ""

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the transport and bring the protocol up (raise ``ConnectionLost``/``DriverTimeout``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the transport. Safe to call twice."""

    @abc.abstractmethod
    def run_program(
        self,
        program: Program,
        parameters: Dict[str, float],
        progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = None,
    ) -> ProgramResult:
        """Run ``program`` with numeric ``parameters`` to the end; block meanwhile.

        ``timeout`` bounds the whole program (None: only the per-reply timeouts apply).
        """

    @abc.abstractmethod
    def state(self) -> str:
        """The machine's PackML state name."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Pause motion (feed hold); ``resume`` continues."""

    @abc.abstractmethod
    def resume(self) -> None:
        """Continue after ``hold``."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the running program; ``run_program`` returns with status ``stopped``."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear a fault or a finished cycle, back to ``Idle``."""

    @abc.abstractmethod
    def health(self) -> Dict[str, Any]:
        """``{"level": "ok"|"warn"|"error", "message": str, ...details}`` for /diagnostics."""

    def counters(self) -> Dict[str, int]:
        """Counters for reports (lines sent/acknowledged, calls made, reconnects)."""
        return {}

    def __enter__(self) -> "Machine":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_machine(machine_cfg: MachineConfig, address: Optional[str] = None) -> Machine:
    """The driver for one configured machine (not yet connected; call ``connect()``).

    ``machine_cfg`` is an :class:`anycell.cell.MachineConfig`. ``address`` overrides the serial port
    or the OPC UA endpoint, which is how a config is pointed at a simulated machine. A machine
    with ``driver.kind: sim`` needs ``address`` (from :func:`anycell.sim.machines.launch_sim_machine`).
    """
    drv = machine_cfg.driver
    kind = drv.kind
    if drv.kind == "serial" or (drv.kind == "sim" and drv.protocol in ("grbl", "marlin")):
        dialect = drv.dialect if drv.kind == "serial" else drv.protocol
        port = address or (drv.port if drv.kind == "serial" else None)
        if not port:
            raise ConfigError(f"machine '{machine_cfg.id}' is simulated; give the simulator's address",
                              field=f"machines.{machine_cfg.id}.driver",
                              hint="start it with anycell.sim.machines.launch_sim_machine and pass .address")
        if dialect == "grbl":
            from .grbl import GrblMachine

            return GrblMachine(machine_cfg, port)
        from .marlin import MarlinMachine

        return MarlinMachine(machine_cfg, port)
    if drv.kind == "opcua" or (drv.kind == "sim" and drv.protocol == "opcua"):
        endpoint = address or (drv.endpoint if drv.kind == "opcua" else None)
        if not endpoint:
            raise ConfigError(f"machine '{machine_cfg.id}' is simulated; give the simulator's endpoint",
                              field=f"machines.{machine_cfg.id}.driver",
                              hint="start it with anycell.sim.machines.launch_sim_machine and pass .address")
        from .opcua import OpcUaMachine

        return OpcUaMachine(machine_cfg, endpoint)
    raise ConfigError(f"unknown driver kind '{kind}'", field=f"machines.{machine_cfg.id}.driver.kind")


#: Serial settings of a ``kind: sim`` GRBL/Marlin machine (the simulator's defaults).
SIM_SERIAL_SETTINGS: Dict[str, Any] = {
    "baud": 115200, "timeout": 10.0, "allowed": [], "forbidden": [], "streaming": "character_counting",
    "work_offset": None, "unknown_command": "fail", "autoreport_interval": 1,
}


def serial_settings(machine_cfg: MachineConfig) -> Dict[str, Any]:
    """Baud, timeouts, allow/deny lists, streaming mode, work offset (meters) and Marlin policies.

    ``kind: sim`` machines get :data:`SIM_SERIAL_SETTINGS`.
    """
    drv = machine_cfg.driver
    if drv.kind == "serial":
        return {"baud": drv.baud, "timeout": drv.timeout, "allowed": list(drv.allowed_gcodes),
                "forbidden": list(drv.forbidden_gcodes), "streaming": drv.streaming,
                "work_offset": list(drv.work_offset) if drv.work_offset is not None else None,
                "unknown_command": drv.unknown_command, "autoreport_interval": drv.autoreport_interval}
    return dict(SIM_SERIAL_SETTINGS)


def program_source(program: Program) -> Optional[str]:
    """The file name a program came from, for error locations."""
    return str(program.file) if program.file is not None else None


#: The default OPC UA node map (profile ``custom``), shared by the driver and the simulated machines:
#: a config's ``nodes``/``methods`` entries replace these key by key.
DEFAULT_NODES: Dict[str, str] = {
    "state": "0:Objects/2:Machine/2:State",
    "program": "0:Objects/2:Machine/2:Program",
    "progress": "0:Objects/2:Machine/2:Progress",
    "part_count": "0:Objects/2:Machine/2:PartCount",
    "alarm": "0:Objects/2:Machine/2:Alarm",
    "parameters": "0:Objects/2:Machine/2:Parameters",
}
#: PackML commands as methods of the machine object, and ``SetParameter(name, value)``.
DEFAULT_METHODS: Dict[str, str] = {
    **{name.lower(): f"0:Objects/2:Machine/2:{name}"
       for name in ("Start", "Stop", "Hold", "Unhold", "Suspend", "Unsuspend", "Reset", "Abort", "Clear")},
    "set_parameter": "0:Objects/2:Machine/2:SetParameter",
}
PACKML_STATES: List[str] = list(STATES)
