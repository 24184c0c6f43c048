"""What a machine looks like on the wire, per ``profile``: node and method maps.

``custom`` is the config's own node map over :data:`anycell.drivers.machine.DEFAULT_NODES`. The
standard profiles need only ``object`` (the machine instance): every node and method is a path
relative to it, with namespaces by URI, exactly as the companion specification names them.
"""

from __future__ import annotations

from typing import Dict

PACKML_NS = "http://opcfoundation.org/UA/PackML/"
_P = "{" + PACKML_NS + "}"
_SM = f"{_P}:BaseStateMachine"
_MS = f"{_SM}/{_P}:MachineState"
_ES = f"{_MS}/{_P}:ExecuteState"

#: OPC 30050: the three nested state machines' CurrentState, the production counter and the unit mode.
PACKML_NODES: Dict[str, str] = {
    "state.base": f"{_SM}/0:CurrentState",
    "state.machine": f"{_MS}/0:CurrentState",
    "state.execute": f"{_ES}/0:CurrentState",
    "part_count": f"{_P}:Admin/{_P}:ProdProcessedCount",
    "unit_mode": f"{_P}:Status/{_P}:UnitModeCurrent",
    "product": f"{_P}:Status/{_P}:Product",
    "alarm": f"{_P}:Admin/{_P}:Alarm",
}
#: OPC 30050 methods, each on the state machine that owns it (declared on its ObjectType).
PACKML_METHODS: Dict[str, str] = {
    "start": f"{_ES}/{_P}:Start", "hold": f"{_ES}/{_P}:Hold", "unhold": f"{_ES}/{_P}:Unhold",
    "suspend": f"{_ES}/{_P}:Suspend", "unsuspend": f"{_ES}/{_P}:Unsuspend", "reset": f"{_ES}/{_P}:Reset",
    "reset_stopped": f"{_MS}/{_P}:Reset", "stop": f"{_MS}/{_P}:Stop",
    "abort": f"{_SM}/{_P}:Abort", "clear": f"{_SM}/{_P}:Clear",
    "set_unit_mode": f"{_P}:SetUnitMode", "set_product": f"{_P}:SetProduct",
    "set_parameter": f"{_P}:SetParameter", "set_mach_speed": f"{_P}:SetMachSpeed",
}
#: ProductionMaintenanceModeEnum: the unit mode a program runs in.
PACKML_PRODUCE = 1
JOBS_NS = "http://opcfoundation.org/UA/Machinery/Jobs/"
ISA95_NS = "http://opcfoundation.org/UA/ISA95-JOBCONTROL_V2/"
_J = "{" + JOBS_NS + "}"
_I = "{" + ISA95_NS + "}"
_JOC = f"{_J}:JobManagement/{_J}:JobOrderControl"
#: OPC 40001-3 (Machinery Job Management, used by OPC 40501 Machine Tools): relative to the machine.
JOBS_NODES: Dict[str, str] = {"job_list": f"{_JOC}/{_I}:JobOrderList"}
JOBS_METHODS: Dict[str, str] = {name.lower(): f"{_JOC}/{_I}:{name}" for name in
                                ("Store", "Start", "StoreAndStart", "Stop", "Abort", "Clear", "Pause", "Resume",
                                 "Cancel", "RevokeStart")}
#: ISA-95 job order states (top level of ISA95JobOrderStateMachine) -> PackML names.
JOB_STATES: Dict[str, str] = {"NotAllowedToStart": "Idle", "AllowedToStart": "Starting", "Running": "Execute",
                              "Interrupted": "Held", "Ended": "Complete", "Aborted": "Aborted"}
#: ISA-95 state numbers of the same states.
JOB_STATE_NUMBERS: Dict[int, str] = {1: "NotAllowedToStart", 2: "AllowedToStart", 3: "Running", 4: "Interrupted",
                                     5: "Ended", 6: "Aborted"}
#: Nodes followed with a subscription, per profile.
WATCHED = {"custom": ("state", "progress", "alarm", "part_count"),
           "packml": ("state.base", "state.machine", "state.execute", "part_count", "alarm"),
           "machinery_jobs": ("job_list",)}


def combine_packml(base: str | None, machine: str | None, execute: str | None) -> str | None:
    """One PackML name from the three nested state machines (Aborting/Aborted outermost, then
    Stopped/Stopping/Clearing, else the execute state machine's substate)."""
    if base in ("Aborting", "Aborted"):
        return base
    if machine in ("Stopped", "Stopping", "Clearing"):
        return machine
    return execute or machine or base


def job_state(entry: object) -> str | None:
    """The top-level ISA-95 state name of one ``ISA95JobOrderAndStateDataType`` entry."""
    states = getattr(entry, "State", None) or []
    if not states:
        return None
    top = states[0]
    text = getattr(getattr(top, "StateText", None), "Text", None)
    if text in JOB_STATES:
        return text
    return JOB_STATE_NUMBERS.get(int(getattr(top, "StateNumber", 0) or 0))


def job_id(entry: object) -> str | None:
    return getattr(getattr(entry, "JobOrder", None), "JobOrderID", None)
