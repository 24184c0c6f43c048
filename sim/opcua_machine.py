"""A simulated OPC UA machine tool (asyncua server): ``python -m sim.opcua_machine --help``.

The machine is a PackML state machine with the OPC 30050 (PackML) state names and commands:
``Start``, ``Stop``, ``Hold``, ``Unhold``, ``Suspend``, ``Unsuspend``, ``Reset``, ``Abort`` and
``Clear`` are OPC UA methods; a command the current state does not allow answers
``BadInvalidState``. A client selects a program by writing its name to ``Program``, writes
numeric parameters under ``Parameters`` (or calls ``SetParameter(name, value)``), and calls
``Start``. ``Progress`` runs 0..1 over the program's duration (times ``--time-scale``),
``PartCount`` counts finished cycles and ``Alarm`` holds the active alarm text.

The nodes sit where the cell config's ``nodes``/``methods`` maps say (``--node-map``, browse
paths such as ``0:Objects/2:Machine/2:State``), so the same config drives the simulator and the
real machine. Node ids are stable strings (``ns=2;s=Machine.State``), so they survive restarts.

Fault switches: ``--restart-at-progress F`` stops the OPC UA server for ``--restart-downtime`` s
mid-cycle while the machine keeps cutting (as a controller whose OPC UA stack restarts);
``--alarm-at-progress F`` raises an alarm and aborts the cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional

from asyncua import Server, ua
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import SimpleRoleRuleset
from asyncua.crypto.permission_rules import User, UserRole

log = logging.getLogger("anycell.sim.opcua_machine")
NS_URI = "urn:anycell:sim-machine"

DEFAULT_NODES = {
    "state": "0:Objects/2:Machine/2:State",
    "program": "0:Objects/2:Machine/2:Program",
    "progress": "0:Objects/2:Machine/2:Progress",
    "part_count": "0:Objects/2:Machine/2:PartCount",
    "alarm": "0:Objects/2:Machine/2:Alarm",
}
COMMANDS = ["Start", "Stop", "Hold", "Unhold", "Suspend", "Unsuspend", "Reset", "Abort", "Clear"]
DEFAULT_PROGRAMS = {"POCKET_01": {"duration": 30.0, "parameters": ["depth", "feed", "spindle_rpm"]},
                    "FACE_01": {"duration": 20.0, "parameters": ["depth", "feed"]}}
#: state -> {command: transitional state}; the acting state follows the transitional one.
TRANSITIONS: Dict[str, Dict[str, str]] = {
    "Idle": {"Start": "Starting"},
    "Execute": {"Hold": "Holding", "Suspend": "Suspending"},
    "Held": {"Unhold": "Unholding"},
    "Suspended": {"Unsuspend": "Unsuspending"},
    "Complete": {"Reset": "Resetting"},
    "Stopped": {"Reset": "Resetting"},
    "Aborted": {"Clear": "Clearing"},
}
AFTER = {"Starting": "Execute", "Holding": "Held", "Unholding": "Execute", "Suspending": "Suspended",
         "Unsuspending": "Execute", "Resetting": "Idle", "Stopping": "Stopped", "Aborting": "Aborted",
         "Clearing": "Stopped", "Completing": "Complete"}


class MachineModel:
    """The machine tool itself; the OPC UA server is only its window."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.programs: Dict[str, Dict[str, Any]] = json.loads(args.programs) if args.programs else DEFAULT_PROGRAMS
        self.state = "Idle"
        self.program = ""
        self.progress = 0.0
        self.part_count = 0
        self.alarm = ""
        self.parameters: Dict[str, float] = {p: 0.0 for prog in self.programs.values() for p in prog["parameters"]}
        self.restarted = False
        self.on_change: Callable[[], None] = lambda: None
        self.cycle_task: Optional[asyncio.Task] = None
        self.logf = open(args.log, "a", buffering=1) if args.log else None

    def record(self, text: str) -> None:
        if self.logf:
            self.logf.write(text + "\n")

    def set_state(self, state: str) -> None:
        self.record(f"STATE {self.state} -> {state}")
        self.state = state
        self.on_change()

    async def command(self, name: str) -> None:
        self.record(f"CALL {name}")
        if name == "Abort":
            if self.state in ("Aborting", "Aborted"):
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
            await self._transition("Aborting")
            return
        if name == "Stop":
            if self.state in ("Stopped", "Stopping", "Aborting", "Aborted", "Clearing"):
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
            await self._transition("Stopping")
            return
        nxt = TRANSITIONS.get(self.state, {}).get(name)
        if nxt is None:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
        if name == "Start":
            await self.before_start()
            if self.program not in self.programs:
                self.record(f"REJECT unknown program {self.program!r}")
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument)
            self.progress = 0.0
            self.record(f"START {self.program} {json.dumps(self.parameters, sort_keys=True)}")
        if name == "Reset":
            self.progress = 0.0
        if name == "Clear":
            self.alarm = ""
        await self._transition(nxt)

    async def _transition(self, transitional: str) -> None:
        if transitional in ("Stopping", "Aborting") and self.cycle_task is not None:
            self.cycle_task.cancel()
            self.cycle_task = None
        self.set_state(transitional)
        asyncio.get_running_loop().call_later(0.05, self._settle, transitional)

    def _settle(self, transitional: str) -> None:
        if self.state != transitional:
            return
        self.set_state(AFTER[transitional])
        if self.state == "Execute" and self.cycle_task is None:
            self.cycle_task = asyncio.get_running_loop().create_task(self._cycle())

    async def _cycle(self) -> None:
        duration = float(self.programs[self.program].get("duration", 10.0)) * self.args.time_scale
        step = 0.02
        try:
            while self.progress < 1.0:
                await asyncio.sleep(step)
                if self.state != "Execute":
                    continue
                self.progress = min(1.0, self.progress + (step / duration if duration > 0 else 1.0))
                self.on_change()
                if self.args.alarm_at_progress and self.progress >= self.args.alarm_at_progress:
                    self.alarm = "ALARM 1012: spindle overload (fault switch)"
                    self.record("ALARM " + self.alarm)
                    self.cycle_task = None
                    await self._transition("Aborting")
                    return
                if (self.args.restart_at_progress and not self.restarted
                        and self.progress >= self.args.restart_at_progress):
                    self.restarted = True
                    asyncio.get_running_loop().create_task(self.restart_hook())
        except asyncio.CancelledError:
            return
        self.cycle_task = None
        self.part_count += 1
        self.record(f"DONE {self.program} part_count={self.part_count}")
        self.set_state("Completing")
        asyncio.get_running_loop().call_later(0.05, self._settle, "Completing")

    async def restart_hook(self) -> None:  # replaced by the server wrapper
        pass

    async def before_start(self) -> None:  # replaced by the server wrapper: read what clients wrote
        pass


class CellUserManager(UserManager):
    """Anonymous or one user name / password pair, as a machine's login would."""

    def __init__(self, username: Optional[str], password: Optional[str]) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver: Any, username: Optional[str] = None, password: Optional[str] = None,
                 certificate: Any = None) -> Optional[User]:
        if self.username is None:
            return User(role=UserRole.User)
        if username == self.username and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


def _split(path: str) -> List[tuple]:
    out = []
    for part in path.split("/"):
        ns, _, name = part.partition(":")
        out.append((int(ns), name))
    return out


class MachineServer:
    """Builds the OPC UA address space over a :class:`MachineModel` and (re)starts the server."""

    def __init__(self, args: argparse.Namespace, model: MachineModel) -> None:
        self.args = args
        self.model = model
        nodes, methods = dict(DEFAULT_NODES), {c.lower(): f"0:Objects/2:Machine/2:{c}" for c in COMMANDS}
        if args.node_map:
            with open(args.node_map, encoding="utf-8") as fh:
                m = json.load(fh)
            nodes.update(m.get("nodes", {}))
            methods.update(m.get("methods", {}))
        self.nodes, self.methods = nodes, methods
        self.server: Optional[Server] = None
        self.vars: Dict[str, Any] = {}
        self.param_vars: Dict[str, Any] = {}
        model.on_change = self.publish
        model.restart_hook = self.restart
        model.before_start = self.pull_once

    async def build(self) -> Server:
        args = self.args
        user_manager = CellUserManager(args.username, os.environ.get(args.password_env) if args.password_env else None)
        server = Server(user_manager=user_manager)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}{args.path}")
        server.set_server_name("anycell simulated machine tool")
        await server.set_application_uri("urn:anycell:opcua-sim")
        if args.security != "none":
            await server.load_certificate(args.cert)
            await server.load_private_key(args.key)
            policies = {"sign": [ua.SecurityPolicyType.Basic256Sha256_Sign],
                        "encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
                        "both": [ua.SecurityPolicyType.Basic256Sha256_Sign,
                                 ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]}[args.security]
            server.set_security_policy(policies, permission_ruleset=SimpleRoleRuleset())
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if args.username:
            server.set_security_IDs(["Username"])
        idx = await server.register_namespace(NS_URI)
        assert idx == 2, idx
        created: Dict[str, Any] = {}

        async def parent_of(path: str) -> Any:
            parts = _split(path)
            assert parts[0] == (0, "Objects"), f"paths start at 0:Objects, not {path}"
            node = server.nodes.objects
            key = "0:Objects"
            for ns, name in parts[1:-1]:
                key += f"/{ns}:{name}"
                if key not in created:
                    created[key] = await node.add_object(ua.NodeId(key.split("/", 1)[1].replace("/", ".").replace(
                        f"{ns}:", ""), ns), ua.QualifiedName(name, ns))
                node = created[key]
            return node, parts[-1]

        types = {"state": ("Idle", ua.VariantType.String), "program": ("", ua.VariantType.String),
                 "progress": (0.0, ua.VariantType.Double), "part_count": (0, ua.VariantType.UInt32),
                 "alarm": ("", ua.VariantType.String)}
        self.vars = {}
        for key, path in self.nodes.items():
            if key not in types:
                continue
            parent, (ns, name) = await parent_of(path)
            sid = ".".join(p[1] for p in _split(path)[1:])
            init, vt = types[key]
            var = await parent.add_variable(ua.NodeId(sid, ns), ua.QualifiedName(name, ns), ua.Variant(init, vt))
            if key == "program":
                await var.set_writable()
            self.vars[key] = var
        machine_path = self.nodes["state"].rsplit("/", 1)[0]
        pfolder, (pns, _) = await parent_of(machine_path + "/2:Parameters/2:x")
        self.param_vars = {}
        for pname in self.model.parameters:
            sid = ".".join(p[1] for p in _split(machine_path)[1:]) + ".Parameters." + pname
            var = await pfolder.add_variable(ua.NodeId(sid, pns), ua.QualifiedName(pname, pns),
                                             ua.Variant(self.model.parameters[pname], ua.VariantType.Double))
            await var.set_writable()
            self.param_vars[pname] = var
        for key, path in self.methods.items():
            cmd = next((c for c in COMMANDS if c.lower() == key), None)
            if cmd is None:
                continue
            parent, (ns, name) = await parent_of(path)
            sid = ".".join(p[1] for p in _split(path)[1:])
            await parent.add_method(ua.NodeId(sid, ns), ua.QualifiedName(name, ns), self._method(cmd), [], [])
        mparent, _ = await parent_of(machine_path + "/2:x")
        await mparent.add_method(
            ua.NodeId(".".join(p[1] for p in _split(machine_path)[1:]) + ".SetParameter", 2),
            ua.QualifiedName("SetParameter", 2), self._set_parameter,
            [ua.VariantType.String, ua.VariantType.Double], [ua.VariantType.Boolean])
        return server

    def _method(self, cmd: str) -> Callable:
        async def call(parent: Any) -> List[ua.Variant]:
            await self.model.command(cmd)
            return []
        return call

    async def _set_parameter(self, parent: Any, name: ua.Variant, value: ua.Variant) -> List[ua.Variant]:
        pname = name.Value if isinstance(name, ua.Variant) else name
        val = value.Value if isinstance(value, ua.Variant) else value
        if pname not in self.param_vars:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadNoMatch)
        await self.param_vars[pname].write_value(ua.Variant(float(val), ua.VariantType.Double))
        return [ua.Variant(True, ua.VariantType.Boolean)]

    def publish(self) -> None:
        """Push the model's values into the address space (after every change)."""
        if self.server is None:
            return
        m = self.model
        values = {"state": m.state, "progress": m.progress, "part_count": m.part_count, "alarm": m.alarm}
        types = {"state": ua.VariantType.String, "progress": ua.VariantType.Double,
                 "part_count": ua.VariantType.UInt32, "alarm": ua.VariantType.String}
        for key, val in values.items():
            var = self.vars.get(key)
            if var is not None:
                asyncio.get_running_loop().create_task(self._write(var, ua.Variant(val, types[key])))

    async def _write(self, var: Any, value: ua.Variant) -> None:
        try:
            await var.write_value(value)
        except Exception:  # noqa: BLE001 - the server may be restarting
            pass

    async def pull_once(self) -> None:
        """Read what clients wrote (program, parameters) back into the model."""
        if self.server is None:
            return
        try:
            prog = self.vars.get("program")
            if prog is not None:
                self.model.program = str(await prog.read_value() or "")
            for name, var in self.param_vars.items():
                self.model.parameters[name] = float(await var.read_value())
        except Exception:  # noqa: BLE001 - the server may be restarting
            pass

    async def pull(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            await self.pull_once()

    async def start(self) -> None:
        server = await self.build()
        await server.start()
        self.server = server
        self.publish()
        # restore what clients had written before a restart
        if self.model.program and "program" in self.vars:
            await self.vars["program"].write_value(ua.Variant(self.model.program, ua.VariantType.String))
        for name, var in self.param_vars.items():
            await var.write_value(ua.Variant(self.model.parameters[name], ua.VariantType.Double))

    async def restart(self) -> None:
        self.model.record(f"SERVER_RESTART down for {self.args.restart_downtime}s")
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        await asyncio.sleep(self.args.restart_downtime)
        await self.start()
        self.model.record("SERVER_UP")


async def amain(args: argparse.Namespace) -> None:
    model = MachineModel(args)
    ms = MachineServer(args, model)
    await ms.start()
    asyncio.get_running_loop().create_task(ms.pull())
    model.record("BOOT")
    info = json.dumps({"address": f"opc.tcp://127.0.0.1:{args.port}{args.path}", "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(info)
        os.replace(tmp, args.ready_file)
    sys.stdout.write(info + "\n")
    sys.stdout.flush()
    while True:
        await asyncio.sleep(3600)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m anycell.sim.opcua_machine", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4840)
    parser.add_argument("--path", default="/anycell/machine", help="endpoint path")
    parser.add_argument("--node-map", help="JSON file {nodes: {...}, methods: {...}} from the cell config")
    parser.add_argument("--programs", help='JSON {"NAME": {"duration": s, "parameters": [..]}}')
    parser.add_argument("--ready-file")
    parser.add_argument("--log")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply program durations by this")
    parser.add_argument("--security", choices=["none", "sign", "encrypt", "both"], default="none",
                        help="Basic256Sha256 Sign, SignAndEncrypt, both, or no security")
    parser.add_argument("--cert", help="server certificate (DER/PEM) for --security")
    parser.add_argument("--key", help="server private key (PEM) for --security")
    parser.add_argument("--username", help="require this user name")
    parser.add_argument("--password-env", help="environment variable holding the password")
    parser.add_argument("--restart-at-progress", type=float, default=0.0,
                        help="fault: restart the OPC UA server once, when the cycle reaches this fraction")
    parser.add_argument("--restart-downtime", type=float, default=1.0, help="seconds the server stays down")
    parser.add_argument("--alarm-at-progress", type=float, default=0.0, help="fault: alarm and abort at this fraction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
