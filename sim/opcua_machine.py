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
from cryptography.hazmat.primitives.serialization import Encoding

from anycell.drivers.machine import DEFAULT_METHODS, DEFAULT_NODES
from anycell.drivers.opcua.addressing import is_absolute, is_node_id, parse_path, split_path
from anycell.heap import quiet_start
from anycell.packml_model import ACTING, STATE_NUMBERS, target_of

_DER = Encoding.DER

log = logging.getLogger("anycell.sim.opcua_machine")
NS_URI = "urn:anycell:sim-machine"
COMMANDS = ["Start", "Stop", "Hold", "Unhold", "Suspend", "Unsuspend", "Reset", "Abort", "Clear"]
#: name -> duration (s), parameters, and the PackML ProductID it is served as under --profile packml.
DEFAULT_PROGRAMS = {"POCKET_01": {"duration": 30.0, "parameters": ["depth", "feed", "spindle_rpm"], "product": 1},
                    "FACE_01": {"duration": 20.0, "parameters": ["depth", "feed"], "product": 2}}
#: Acting states and the state they settle in (Execute settles through the cycle, not a timer).
AFTER = {k: v for k, v in ACTING.items() if k != "Execute"}


class MachineModel:
    """The machine tool itself; the OPC UA server is only its window."""

    def __init__(self, args: argparse.Namespace, label: str = "") -> None:
        self.args = args
        self.label = label
        self.programs: Dict[str, Dict[str, Any]] = json.loads(args.programs) if args.programs else DEFAULT_PROGRAMS
        self.state = "Idle"
        self.program = ""
        self.progress = 0.0
        self.part_count = 0
        self.alarm = ""
        self.parameters: Dict[str, float] = {p: 0.0 for prog in self.programs.values() for p in prog["parameters"]}
        self.restarted = False
        self.unit_mode = 1  # PackML ProductionMaintenanceModeEnum; the packml server starts it at 0 (Invalid)
        self.on_change: Callable[[], None] = lambda: None
        self.cycle_task: Optional[asyncio.Task] = None
        self.logf = open(args.log, "a", buffering=1) if args.log else None

    def record(self, text: str) -> None:
        if self.logf:
            self.logf.write((f"{self.label}: " if self.label else "") + text + "\n")

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
        nxt = target_of(self.state, name.lower())
        if nxt is None:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
        if name == "Start":
            await self.before_start()
            if self.unit_mode != 1:
                self.record(f"REJECT Start in unit mode {self.unit_mode}")
                raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidState)
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
    """Anonymous, one user name / password pair, or one X.509 user certificate, as a machine's login would."""

    def __init__(self, username: Optional[str], password: Optional[str], user_cert: Optional[bytes] = None,
                 refuse_all: bool = False) -> None:
        self.username, self.password, self.user_cert, self.refuse_all = username, password, user_cert, refuse_all

    def get_user(self, iserver: Any, username: Optional[str] = None, password: Optional[str] = None,
                 certificate: Any = None) -> Optional[User]:
        if self.refuse_all:
            return None
        if self.user_cert is not None:
            der = certificate if isinstance(certificate, (bytes, bytearray)) or certificate is None else \
                getattr(certificate, "public_bytes", lambda *_: b"")(_DER)
            return User(role=UserRole.User, name="x509") if der is not None and bytes(der) == self.user_cert else None
        if self.username is None:
            return User(role=UserRole.User)
        if username == self.username and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


def _split(path: str) -> List[tuple]:
    """(namespace, name) steps of a node map path; 0 stays 0, anything else is the machine's namespace
    (``2:`` as in the default map, or ``{urn:anycell:sim-machine}:``), marked -1 until it is registered."""
    return [(0 if seg.ns == 0 else -1, seg.name) for seg in parse_path(path)]


def _der_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN" in data:
        from cryptography import x509

        return x509.load_pem_x509_certificate(data).public_bytes(_DER)
    return data


def _refuse_none_channels() -> None:
    """Make this server process refuse secure channels with policy None (some servers offer no None
    endpoint and do not even answer GetEndpoints over None)."""
    from asyncua.common import connection
    from asyncua.crypto.security_policies import SecurityPolicyNone

    original = connection.SecureConnection.select_policy

    def select_policy(self: Any, uri: str, peer_certificate: Any, mode: Any = None) -> None:
        if uri == SecurityPolicyNone.URI:
            log.warning("refusing a secure channel with policy None")
            raise ua.UaError("policy None is not offered")
        original(self, uri, peer_certificate, mode)

    connection.SecureConnection.select_policy = select_policy  # type: ignore[method-assign]


def _arg(name: str, vt: ua.VariantType) -> ua.Argument:
    """A declared method argument with a name (asyncua's shorthand leaves names empty)."""
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vt.value)
    arg.ValueRank = -1
    return arg


class MachineServer:
    """Builds the OPC UA address space over a :class:`MachineModel` and (re)starts the server."""

    def __init__(self, args: argparse.Namespace, model: MachineModel) -> None:
        self.args = args
        self.model = model
        nodes, methods = dict(DEFAULT_NODES), dict(DEFAULT_METHODS)
        nodes.pop("parameters", None)
        self.restarts = 0
        self.profile, self.object, self.products = "custom", None, {}
        if args.node_map:
            with open(args.node_map, encoding="utf-8") as fh:
                m = json.load(fh)
            obj = m.get("object")

            def place(entries: Dict[str, str]) -> Dict[str, str]:
                # node ids name nodes the default layout already has; relative paths hang under the object
                return {k: (v if is_absolute(v) else f"{obj}/{v}") for k, v in entries.items()
                        if not is_node_id(v) and (obj or is_absolute(v))}

            nodes.update(place(m.get("nodes", {})))
            methods.update(place(m.get("methods", {})))
            self.profile = m.get("profile", "custom")
            self.object = obj
            self.products = m.get("products", {})
        self.nodes, self.methods = nodes, methods
        self.server: Optional[Server] = None
        self.vars: Dict[str, Any] = {}
        self.param_vars: Dict[str, Any] = {}
        model.on_change = self.publish
        model.restart_hook = self.restart
        model.before_start = self.pull_once

    async def base_server(self) -> Server:
        """A server with the endpoint, security and login of the command line, and nothing else yet."""
        args = self.args
        user_cert = _der_file(args.user_cert) if args.user_cert else None
        user_manager = CellUserManager(args.username, os.environ.get(args.password_env) if args.password_env else None,
                                       user_cert, refuse_all=bool(self.restarts and args.restart_refuses_login))
        server = Server(user_manager=user_manager)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}{args.path}")
        server.set_server_name("anycell simulated machine tool")
        await server.set_application_uri("urn:anycell:opcua-sim")
        if args.security != "none":
            changed = bool(self.restarts and args.restart_cert)
            await server.load_certificate(args.restart_cert if changed else args.cert)
            await server.load_private_key(args.restart_key if changed else args.key)
            policies = {"sign": [ua.SecurityPolicyType.Basic256Sha256_Sign],
                        "encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
                        "both": [ua.SecurityPolicyType.Basic256Sha256_Sign,
                                 ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]}[args.security]
            server.set_security_policy(policies, permission_ruleset=SimpleRoleRuleset())
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if args.user_cert:
            server.set_identity_tokens([ua.X509IdentityToken])
        elif args.username:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.restarts and args.namespace_shift_on_restart:
            await server.register_namespace("urn:anycell:sim-machine:before")  # moves ours one index up
        return server

    async def build(self) -> Server:
        server = await self.base_server()
        idx = await server.register_namespace(NS_URI)
        created: Dict[str, Any] = {}

        def steps(path: str) -> List[tuple]:
            return [(idx if ns < 0 else ns, name) for ns, name in _split(path)]

        async def parent_of(path: str) -> Any:
            parts = steps(path)
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

        enc = self.args.state_encoding
        state_init = {"string": ua.Variant("Idle", ua.VariantType.String),
                      "localized": ua.Variant(ua.LocalizedText("Idle", "en"), ua.VariantType.LocalizedText),
                      "number": ua.Variant(STATE_NUMBERS["Idle"], ua.VariantType.Int32)}[enc]
        types = {"state": state_init, "program": ua.Variant("", ua.VariantType.String),
                 "progress": ua.Variant(0.0, ua.VariantType.Double), "part_count": ua.Variant(0, ua.VariantType.UInt32),
                 "alarm": ua.Variant("", ua.VariantType.String)}
        self.vars = {}
        for key, path in self.nodes.items():
            if key not in types:
                continue
            parent, (ns, name) = await parent_of(path)
            sid = ".".join(p[1] for p in steps(path)[1:])
            var = await parent.add_variable(ua.NodeId(sid, ns), ua.QualifiedName(name, ns), types[key])
            if key == "program":
                await var.set_writable()
            self.vars[key] = var
        machine_path = "/".join(split_path(self.nodes["state"])[:-1])
        mid = ".".join(p[1] for p in steps(machine_path)[1:])
        pfolder, _ = await parent_of(machine_path + "/2:Parameters/2:x")
        self.param_vars = {}
        for pname in self.model.parameters:
            var = await pfolder.add_variable(ua.NodeId(f"{mid}.Parameters.{pname}", idx), ua.QualifiedName(pname, idx),
                                             ua.Variant(self.model.parameters[pname], ua.VariantType.Double))
            await var.set_writable()
            self.param_vars[pname] = var
        for key, path in self.methods.items():
            cmd = next((c for c in COMMANDS if c.lower() == key), None)
            if cmd is None and key != "set_parameter":
                continue
            parent, (ns, name) = await parent_of(path)
            sid = ".".join(p[1] for p in steps(path)[1:])
            if cmd is not None:
                await parent.add_method(ua.NodeId(sid, ns), ua.QualifiedName(name, ns), self._method(cmd), [], [])
            else:
                await parent.add_method(ua.NodeId(sid, ns), ua.QualifiedName(name, ns), self._set_parameter,
                                        [_arg("name", ua.VariantType.String), _arg("value", ua.VariantType.Double)],
                                        [_arg("ok", ua.VariantType.Boolean)])
        mparent, _ = await parent_of(machine_path + "/2:x")
        # a strict method: Int32 only (BadTypeMismatch otherwise), failure reported through ReturnStatus
        await mparent.add_method(ua.NodeId(f"{mid}.Calibrate", idx), ua.QualifiedName("Calibrate", idx),
                                 self._calibrate, [_arg("Probes", ua.VariantType.Int32)],
                                 [_arg("ReturnStatus", ua.VariantType.Int32)])
        return server

    def _method(self, cmd: str) -> Callable:
        async def call(parent: Any) -> List[ua.Variant]:
            await self.model.command(cmd)
            return []
        return call

    async def _calibrate(self, parent: Any, probes: ua.Variant) -> Any:
        if not isinstance(probes, ua.Variant) or probes.VariantType != ua.VariantType.Int32:
            self.model.record(f"REJECT Calibrate argument {probes!r}")
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        ok = 1 <= probes.Value <= 10
        self.model.record(f"CALIBRATE {probes.Value} {'ok' if ok else 'refused'}")
        return [ua.Variant(0 if ok else 1, ua.VariantType.Int32)]

    async def _set_parameter(self, parent: Any, name: ua.Variant, value: ua.Variant) -> List[ua.Variant]:
        pname = name.Value if isinstance(name, ua.Variant) else name
        val = value.Value if isinstance(value, ua.Variant) else value
        if pname not in self.param_vars:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadNoMatch)
        await self.param_vars[pname].write_value(ua.Variant(float(val), ua.VariantType.Double))
        return [ua.Variant(True, ua.VariantType.Boolean)]

    def state_variant(self, state: str) -> ua.Variant:
        enc = self.args.state_encoding
        if enc == "localized":
            return ua.Variant(ua.LocalizedText(state, "en"), ua.VariantType.LocalizedText)
        if enc == "number":
            return ua.Variant(STATE_NUMBERS[state], ua.VariantType.Int32)
        return ua.Variant(state, ua.VariantType.String)

    def publish(self) -> None:
        """Push the model's values into the address space (after every change)."""
        if self.server is None:
            return
        m = self.model
        values = {"state": self.state_variant(m.state), "progress": ua.Variant(m.progress, ua.VariantType.Double),
                  "part_count": ua.Variant(m.part_count, ua.VariantType.UInt32),
                  "alarm": ua.Variant(m.alarm, ua.VariantType.String)}
        for key, val in values.items():
            var = self.vars.get(key)
            if var is not None:
                asyncio.get_running_loop().create_task(self._write(var, val))

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
        """Keep the model's copy of what clients wrote (it survives a server restart).

        Start reads the variables itself first, so this only has to be recent enough for a
        restart; four times a second keeps an idle simulator light.
        """
        while True:
            await asyncio.sleep(0.25)
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
        self.restarts += 1
        if self.args.restart_loses_job:  # the controller rebooted too: the cycle is gone, the machine Idle
            for model in getattr(self, "models", {self.model.label: self.model}).values():
                if model.cycle_task is not None:
                    model.cycle_task.cancel()
                    model.cycle_task = None
                model.progress = 0.0
                model.state = "Idle"
                model.record("JOB_LOST state Idle")
        await self.start()
        self.model.record("SERVER_UP")


PACKML_URI = "http://opcfoundation.org/UA/PackML/"
#: OPC 30050 method -> (ObjectType number in the PackML namespace, the anycell command or handler name).
PACKML_TYPE_METHODS = [(1, "Start"), (1, "Hold"), (1, "Unhold"), (1, "Suspend"), (1, "Unsuspend"), (1, "Reset"),
                       (2, "Stop"), (2, "Reset"), (3, "Abort"), (3, "Clear"),
                       (6, "SetUnitMode"), (6, "SetProduct"), (6, "SetParameter")]


class PackMLServer(MachineServer):
    """The machine as OPC 30050 defines it: PackMLBaseObjectType instances from the official nodeset.

    The methods exist only on the ObjectTypes (they are optional on instances), as many servers do:
    a call names the instance's state machine as its object, and the server finds the machine by it.
    ``--packml-instances N`` serves N machines of the same type (``Mill``, ``Mill2``...), each its own
    model, so a call on the wrong object would start the wrong machine.
    """

    def __init__(self, args: argparse.Namespace, model: MachineModel) -> None:
        super().__init__(args, model)
        first = parse_path(self.object or "0:Objects/2:Machine")[-1].name
        model.unit_mode = 0
        self.models: Dict[str, MachineModel] = {first: model}
        for i in range(2, args.packml_instances + 1):
            extra = MachineModel(args, label=f"{first}{i}")
            extra.unit_mode = 0
            extra.on_change = self.publish
            extra.logf = model.logf
            self.models[f"{first}{i}"] = extra
        model.before_start = _nothing
        self.product_ids = {int(v): k for k, v in self.products.items()} or {
            int(p["product"]): name for name, p in model.programs.items() if "product" in p}
        self.inst: Dict[str, Dict[str, Any]] = {}

    async def build(self) -> Server:
        from . import nodesets

        server = await self.base_server()
        await server.import_xml(nodesets.require(nodesets.PACKML))
        await server.load_data_type_definitions()
        p = await server.get_namespace_index(PACKML_URI)
        idx = await server.register_namespace(NS_URI)
        self.inst = {}
        for name in self.models:
            inst = await server.nodes.objects.add_object(ua.NodeId(name, idx), ua.QualifiedName(name, idx),
                                                         objecttype=ua.NodeId(6, p))
            sm = await inst.get_child([f"{p}:BaseStateMachine"])
            ms = await sm.get_child([f"{p}:MachineState"])
            es = await ms.get_child([f"{p}:ExecuteState"])
            admin = await inst.get_child([f"{p}:Admin"])
            count = await admin.add_variable(
                ua.NodeId(f"{name}.Admin.ProdProcessedCount", idx), ua.QualifiedName("ProdProcessedCount", p),
                ua.Variant([ua.PackMLCountDataType(ID=1, Name="processed", Count=0, AccCount=0)],
                           ua.VariantType.ExtensionObject), datatype=ua.NodeId(14, p))
            for type_no, mname in PACKML_TYPE_METHODS:  # mandatory methods the instance has of its own
                owner = {1: es, 2: ms, 3: sm, 6: inst}[type_no]
                try:
                    server.link_method(await owner.get_child([f"{p}:{mname}"]), self._handler(mname))
                except ua.UaStatusCodeError:
                    pass  # optional: only on the ObjectType
            alarm = await admin.add_variable(
                ua.NodeId(f"{name}.Admin.Alarm", idx), ua.QualifiedName("Alarm", p),
                ua.Variant([], ua.VariantType.ExtensionObject, is_array=True), datatype=ua.NodeId(15, p))
            status = await inst.get_child([f"{p}:Status"])
            product = await status.add_variable(
                ua.NodeId(f"{name}.Status.Product", idx), ua.QualifiedName("Product", p),
                ua.Variant(ua.PackMLProductDataType(), ua.VariantType.ExtensionObject), datatype=ua.NodeId(18, p))
            await product.set_writable()
            self.inst[name] = {
                "alarm": alarm,
                "base": await sm.get_child(["0:CurrentState"]), "machine": await ms.get_child(["0:CurrentState"]),
                "execute": await es.get_child(["0:CurrentState"]), "count": count,
                "unit_mode": await inst.get_child([f"{p}:Status", f"{p}:UnitModeCurrent"])}
        for type_no, mname in PACKML_TYPE_METHODS:
            method = await server.get_node(ua.NodeId(type_no, p)).get_child([f"{p}:{mname}"])
            server.link_method(method, self._handler(mname))
        return server

    def _model(self, parent: ua.NodeId) -> MachineModel:
        name = str(parent.Identifier).split(".")[0]
        if name not in self.models:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadNodeIdUnknown)
        return self.models[name]

    def _handler(self, mname: str) -> Callable:
        async def call(parent: ua.NodeId, *args: Any) -> Any:
            model = self._model(parent)
            if mname == "SetUnitMode":
                mode = args[0].Value if args else None
                if model.state not in ("Idle", "Stopped", "Aborted", "Complete"):
                    return ua.StatusCode(ua.StatusCodes.BadInvalidState)
                model.unit_mode = int(mode)
                model.record(f"UNIT_MODE {model.unit_mode}")
                self.publish()
                return []
            if mname in ("SetProduct", "SetParameter"):
                items = args[0].Value if args else []
                if mname == "SetProduct":
                    if not items or int(items[0].ProductID) not in self.product_ids:
                        model.record(f"REJECT product {[getattr(i, 'ProductID', i) for i in items or []]}")
                        return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
                    model.program = self.product_ids[int(items[0].ProductID)]
                    model.record(f"PRODUCT {items[0].ProductID} {model.program}")
                    items = items[0].ProcessVariables or []
                for d in items:
                    model.parameters[d.Name] = round(float(d.Value), 6)
                return []
            await model.command(mname)
            return []
        return call

    def publish(self) -> None:
        if self.server is None:
            return
        loop = asyncio.get_running_loop()
        for name, model in self.models.items():
            nodes = self.inst.get(name)
            if not nodes:
                continue
            st = model.state
            base = st if st in ("Aborting", "Aborted") else "Cleared"
            machine = st if st in ("Stopped", "Stopping", "Clearing", "Aborting", "Aborted") else "Running"
            execute = st if machine == "Running" else ""
            for key, text in (("base", base), ("machine", machine), ("execute", execute)):
                loop.create_task(self._write(nodes[key], ua.Variant(ua.LocalizedText(text, "en"),
                                                                    ua.VariantType.LocalizedText)))
            counts = [ua.PackMLCountDataType(ID=1, Name="processed", Count=model.part_count, AccCount=model.part_count)]
            loop.create_task(self._write(nodes["count"], ua.Variant(counts, ua.VariantType.ExtensionObject)))
            loop.create_task(self._write(nodes["unit_mode"], ua.Variant(model.unit_mode, ua.VariantType.Int32)))
            alarms = ([ua.PackMLAlarmDataType(ID=1012, Value=1012, Message=model.alarm, Category=1)]
                      if model.alarm else [])
            loop.create_task(self._write(nodes["alarm"], ua.Variant(alarms, ua.VariantType.ExtensionObject,
                                                                     is_array=True)))

    async def pull_once(self) -> None:  # clients set the product through methods, not variables
        return

    async def start(self) -> None:
        server = await self.build()
        await server.start()
        self.server = server
        self.publish()


async def _nothing() -> None:
    return


async def amain(args: argparse.Namespace) -> None:
    model = MachineModel(args)
    ms: MachineServer = MachineServer(args, model)
    if ms.profile == "packml" or args.profile == "packml":
        ms = PackMLServer(args, model)
    with quiet_start():   # a third of the boot went to the collector walking the new address space
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
    parser.add_argument("--user-cert", help="require this X.509 user certificate (DER/PEM) as the login")
    parser.add_argument("--no-none-channel", action="store_true",
                        help="refuse every secure channel with policy None (no None endpoint, no discovery over None)")
    parser.add_argument("--restart-cert", help="fault: after a restart, serve with this certificate instead")
    parser.add_argument("--restart-key", help="fault: the private key for --restart-cert")
    parser.add_argument("--restart-refuses-login", action="store_true",
                        help="fault: after a restart, refuse every login")
    parser.add_argument("--restart-loses-job", action="store_true",
                        help="fault: the restart reboots the controller too: the cycle is lost, the machine Idle")
    parser.add_argument("--restart-at-progress", type=float, default=0.0,
                        help="fault: restart the OPC UA server once, when the cycle reaches this fraction")
    parser.add_argument("--restart-downtime", type=float, default=1.0, help="seconds the server stays down")
    parser.add_argument("--profile", choices=["custom", "packml"], default="custom",
                        help="packml: serve OPC 30050 PackML instances from the official nodeset (else the node map's)")
    parser.add_argument("--packml-instances", type=int, default=1, help="profile packml: machines of the same type")
    parser.add_argument("--state-encoding", choices=["string", "localized", "number"], default="string",
                        help="how State reports the PackML state: String, LocalizedText or OPC 30050 number")
    parser.add_argument("--namespace-shift-on-restart", action="store_true",
                        help="fault: after a restart the machine's namespace has the next index")
    parser.add_argument("--alarm-at-progress", type=float, default=0.0, help="fault: alarm and abort at this fraction")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.no_none_channel:
        _refuse_none_channels()
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
