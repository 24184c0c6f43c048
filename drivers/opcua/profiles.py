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
#: Nodes followed with a subscription, per profile.
WATCHED = {"custom": ("state", "progress", "alarm", "part_count"),
           "packml": ("state.base", "state.machine", "state.execute", "part_count")}


def combine_packml(base: str | None, machine: str | None, execute: str | None) -> str | None:
    """One PackML name from the three nested state machines (Aborting/Aborted outermost, then
    Stopped/Stopping/Clearing, else the execute state machine's substate)."""
    if base in ("Aborting", "Aborted"):
        return base
    if machine in ("Stopped", "Stopping", "Clearing"):
        return machine
    return execute or machine or base
