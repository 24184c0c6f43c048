"""An OPC UA machine (asyncua client) behind the synchronous :class:`anycell.drivers.machine.Machine` API.

asyncua is asynchronous; the executor is not. The driver runs one asyncio loop in a daemon
thread and every public call submits a coroutine to it with a timeout (the config's
``timeout``), so no call can hang. Errors come back as anycell errors:
``DriverTimeout`` (no answer in time), ``ConnectionLost`` (TCP gone), ``MachineFault`` (a Bad
status from a method, an alarm) and ``ProgramRejected`` (unknown program or parameter).

Security: ``policy: Basic256Sha256`` with ``mode: Sign`` or ``SignAndEncrypt`` uses the client
certificate and key named in the config. Before any secure session the driver fetches the
server's endpoints and refuses to talk unless the server certificate is one of the config's
``trusted_server_certificates`` (compared by SHA-256 of the DER bytes); the trusted copy is then
the one the secure channel encrypts to. Username login takes the password from the environment
variable ``password_env``, never from the config file.

Nodes and methods come from the config's maps: a node id (``ns=2;s=Machine.State``) or a browse
path (``0:Objects/2:Machine/2:State``). Program parameters go to ``param.<name>`` when mapped,
else to ``<Parameters folder>/<ns>:<name>`` (``parameters`` key, default: a ``Parameters``
object next to ``state``). State, progress and alarm are followed with a subscription.

A watchdog reads the server status every ``watchdog_interval`` s. When the connection drops,
the driver reconnects (every ``reconnect_interval`` s), resolves the nodes again, restores the
subscription, reads the true current state, and records the outage (start, end, seconds) in
``health()``. ``run_program`` keeps waiting through an outage and reports what the machine says
once it is back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto

from anycell.errors import ConnectionLost, DriverError, DriverTimeout, MachineFault, ProgramRejected
from anycell.job import Program

from .machine import DEFAULT_METHODS, DEFAULT_NODES, Machine, ProgramResult, Progress, ProgressCallback

log = logging.getLogger(__name__)

POLICIES = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
            "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
            "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
CONNECTION_ERRORS = (ConnectionError, OSError, asyncio.IncompleteReadError, ua.UaError, EOFError)


def _der(path: str) -> bytes:
    """A certificate file (DER or PEM) as DER bytes."""
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class _Handler:
    """Subscription callbacks, called in the loop thread."""

    def __init__(self, owner: "OpcUaMachine") -> None:
        self.owner = owner

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.owner._on_value(node.nodeid, val)

    def status_change_notification(self, status: Any) -> None:
        log.info("subscription status change: %s", status)


class OpcUaMachine(Machine):
    """A machine reached over OPC UA. See the module docstring."""

    protocol = "opcua"

    def __init__(self, machine_cfg: Any, endpoint: str, *, watchdog_interval: float = 0.5,
                 reconnect_interval: float = 0.3, subscription_period_ms: int = 50) -> None:
        self.cfg = machine_cfg
        self.machine_id = machine_cfg.id
        self.endpoint = endpoint
        drv = machine_cfg.driver
        opc = drv.kind == "opcua"
        self.nodes_cfg: Dict[str, str] = dict(DEFAULT_NODES)
        self.methods_cfg: Dict[str, str] = dict(DEFAULT_METHODS)
        self.methods_cfg["set_parameter"] = "0:Objects/2:Machine/2:SetParameter"
        if opc:
            if drv.nodes:
                self.nodes_cfg.update(drv.nodes)
            if drv.methods:
                self.methods_cfg.update(drv.methods)
        self.security = drv.security if opc else None
        self.username = drv.username if opc else None
        self.password_env = drv.password_env if opc else None
        self.timeout = float(drv.timeout) if opc else 5.0
        self.watchdog_interval = watchdog_interval
        self.reconnect_interval = reconnect_interval
        self.subscription_period_ms = subscription_period_ms
        self._start_loop()
        self._client: Optional[Client] = None
        self._nodes: Dict[str, Any] = {}
        self._node_types: Dict[str, ua.VariantType] = {}
        self._by_id: Dict[Any, str] = {}
        self._values: Dict[str, Any] = {}
        self._value_seq = 0
        self._cv = threading.Condition()
        self._connected = False
        self._closing = False
        self._watchdog: Optional[concurrent.futures.Future] = None
        self._server_der: Optional[bytes] = None
        self.outages: List[Dict[str, Any]] = []
        self.reconnects = 0
        self.calls = 0
        self.reads = 0
        self.writes = 0
        self._stop_requested = False
        self._state_listeners: List[Any] = []

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout: Optional[float] = None, what: str = "call") -> Any:
        """Run a coroutine in the loop thread, with a timeout, mapping errors to anycell's.

        A task is created in the loop and its completion handed back through a SimpleQueue:
        about half the cost of ``run_coroutine_threadsafe`` (measured in bench/bench_opcua.py).
        """
        t = timeout or self.timeout
        box: "queue.SimpleQueue[asyncio.Task]" = queue.SimpleQueue()
        holder: Dict[str, asyncio.Task] = {}

        def go() -> None:
            task = self._loop.create_task(coro)
            holder["task"] = task
            task.add_done_callback(box.put)

        self._loop.call_soon_threadsafe(go)
        try:
            task = box.get(timeout=t)
        except queue.Empty:
            self._loop.call_soon_threadsafe(lambda: holder["task"].cancel() if "task" in holder else None)
            raise DriverTimeout(f"{self.machine_id}: OPC UA {what} got no answer within {t:g} s",
                                hint=f"is {self.endpoint} reachable?") from None
        try:
            return task.result()
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise DriverTimeout(f"{self.machine_id}: OPC UA {what} got no answer within {t:g} s",
                                hint=f"is {self.endpoint} reachable?") from exc
        except ua.UaStatusCodeError as exc:
            raise MachineFault(f"{self.machine_id}: OPC UA {what} failed: {exc}") from exc
        except DriverError:
            raise
        except asyncio.CancelledError as exc:
            raise ConnectionLost(f"{self.machine_id}: OPC UA {what} was cancelled (connection closing)") from exc
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"{self.machine_id}: OPC UA {what} failed, connection lost: {exc!r}",
                                 hint=f"is the server at {self.endpoint} running?") from exc

    def _on_value(self, nodeid: Any, val: Any) -> None:
        key = self._by_id.get(nodeid)
        if key is None:
            return
        with self._cv:
            old = self._values.get(key)
            self._values[key] = val
            self._value_seq += 1
            self._cv.notify_all()
        if key == "state" and val != old:
            for fn in list(self._state_listeners):
                try:
                    fn(str(val))
                except Exception:  # noqa: BLE001 - a listener must not break the subscription
                    log.exception("%s: state listener failed", self.machine_id)

    def add_state_listener(self, fn: Any) -> None:
        """Call ``fn(state_name)`` on every state change the subscription reports (loop thread;
        keep it short). Listeners survive reconnects: the new subscription feeds them too."""
        self._state_listeners.append(fn)

    # -- connecting ------------------------------------------------------------------------------
    async def _check_server_certificate(self) -> bytes:
        sec = self.security
        assert sec is not None
        probe = Client(self.endpoint, timeout=self.timeout)
        endpoints = await probe.connect_and_get_server_endpoints()
        policy_uri = POLICIES[sec.policy].URI
        offered = [e for e in endpoints if e.SecurityPolicyUri == policy_uri and e.SecurityMode == MODES[sec.mode]]
        if not offered:
            raise DriverError(f"{self.machine_id}: server at {self.endpoint} offers no {sec.policy}/{sec.mode} "
                              "endpoint", hint="match security.policy and security.mode to the server")
        der = bytes(offered[0].ServerCertificate)
        trusted = {fingerprint(_der(p)) for p in sec.trusted_server_certificates}
        if fingerprint(der) not in trusted:
            raise DriverError(
                f"{self.machine_id}: the server certificate at {self.endpoint} is not trusted "
                f"(SHA-256 {fingerprint(der)[:16]}...)",
                field=f"machines.{self.machine_id}.driver.security.trusted_server_certificates",
                hint="check the fingerprint with the machine builder, then add the server certificate file here")
        return der

    async def _open(self) -> None:
        client = Client(self.endpoint, timeout=self.timeout)
        sec = self.security
        if sec is not None and sec.policy != "None":
            if self._server_der is None:
                self._server_der = await self._check_server_certificate()
            else:
                der = await self._check_server_certificate()
                if der != self._server_der:
                    raise DriverError(f"{self.machine_id}: the server certificate changed", hint="trust the new one")
            client.application_uri = await self._client_uri(str(sec.certificate))
            await client.set_security(POLICIES[sec.policy], str(sec.certificate), str(sec.private_key),  # type: ignore[type-abstract]
                                      server_certificate=self._server_der, mode=MODES[sec.mode])
        if self.username:
            client.set_user(self.username)
            pw = os.environ.get(self.password_env or "", None)
            if pw is None:
                raise DriverError(f"{self.machine_id}: password variable '{self.password_env}' is not set",
                                  field=f"machines.{self.machine_id}.driver.password_env")
            client.set_password(pw)
        await client.connect()
        try:
            nodes: Dict[str, Any] = {}
            for key, path in self.nodes_cfg.items():
                if key == "parameters" or key.startswith("param."):
                    continue
                try:
                    nodes[key] = await self._resolve(client, path)
                except ua.UaStatusCodeError:
                    if key in DEFAULT_NODES and key not in (self.cfg.driver.nodes if self.cfg.driver.kind == "opcua"
                                                            else {}):
                        continue  # an optional default the server does not have
                    raise DriverError(f"{self.machine_id}: node '{key}' ({path}) not found on the server",
                                      field=f"machines.{self.machine_id}.driver.nodes.{key}")
            self._nodes = nodes
            self._by_id = {n.nodeid: k for k, n in nodes.items()}
            self._method_nodes: Dict[str, Tuple[Any, Any]] = {}
            watch = [nodes[k] for k in ("state", "progress", "alarm", "part_count") if k in nodes]
            for k in ("state", "progress", "alarm", "part_count"):
                if k in nodes:
                    self._on_value(nodes[k].nodeid, await nodes[k].read_value())
            if watch:
                sub = await client.create_subscription(self.subscription_period_ms, _Handler(self))
                await sub.subscribe_data_change(watch)
        except BaseException:
            await client.disconnect()
            raise
        self._client = client

    async def _client_uri(self, cert_path: str) -> str:
        try:
            cert = await uacrypto.load_certificate(cert_path)
            from cryptography import x509

            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:
                return uris[0]
        except Exception:  # noqa: BLE001 - no SAN URI: keep asyncua's default
            pass
        return "urn:anycell:client"

    async def _resolve(self, client: Client, path: str) -> Any:
        if path.startswith(("ns=", "i=", "s=", "g=", "b=")):
            node = client.get_node(path)
            await node.read_browse_name()
            return node
        parts = path.split("/")
        return await client.nodes.root.get_child(parts)

    def _start_loop(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"opcua-{self.machine_id}", daemon=True)
        self._thread.start()

    def connect(self) -> None:
        self._closing = False
        if not self._thread.is_alive():
            self._start_loop()
        self._run(self._open(), timeout=self.timeout * 3, what="connect")
        self._connected = True
        self._watchdog = asyncio.run_coroutine_threadsafe(self._watch(), self._loop)

    async def _watch(self) -> None:
        """Notice a dead connection, reconnect, restore the subscription, record the outage."""
        while not self._closing:
            await asyncio.sleep(self.watchdog_interval)
            if self._closing:
                return
            client = self._client
            try:
                assert client is not None
                await asyncio.wait_for(client.nodes.server_state.read_value(), self.timeout)
                continue
            except (asyncio.TimeoutError, AssertionError, *CONNECTION_ERRORS) as exc:
                if self._closing:
                    return
                outage = {"start": time.time(), "end": None, "seconds": None, "reason": repr(exc)}
                self.outages.append(outage)
                log.warning("%s: OPC UA connection lost (%r); reconnecting", self.machine_id, exc)
                self._connected = False
                with self._cv:
                    self._cv.notify_all()
            t0 = time.monotonic()
            if client is not None:
                try:
                    await asyncio.wait_for(client.disconnect(), 1.0)
                except Exception:  # noqa: BLE001 - it is already broken
                    pass
            while not self._closing:
                try:
                    await asyncio.wait_for(self._open(), self.timeout * 2)
                    break
                except Exception as exc:  # noqa: BLE001 - keep trying until closed
                    log.debug("%s: reconnect failed: %r", self.machine_id, exc)
                    await asyncio.sleep(self.reconnect_interval)
            if self._closing:
                return
            outage["end"] = time.time()
            outage["seconds"] = round(time.monotonic() - t0, 3)
            self.reconnects += 1
            self._connected = True
            log.warning("%s: OPC UA reconnected after %.2f s; state %s", self.machine_id, outage["seconds"],
                        self._values.get("state"))
            with self._cv:
                self._value_seq += 1
                self._cv.notify_all()

    def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        client, self._client = self._client, None
        if client is not None:
            try:
                self._run(client.disconnect(), timeout=2.0, what="disconnect")
            except DriverError:
                pass
        self._connected = False
        # stop the loop thread; connect() starts a fresh one
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2.0)

    def __del__(self) -> None:  # the loop thread is a daemon; stop it when the driver goes
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:  # noqa: BLE001
            pass

    # -- typed access ----------------------------------------------------------------------------
    def _node(self, key: str) -> Any:
        if self._client is None or not self._connected:
            raise ConnectionLost(f"{self.machine_id}: not connected to {self.endpoint}",
                                 hint="connect() first, or wait for the reconnect")
        if key in self._nodes:
            return self._nodes[key]
        path = self.nodes_cfg.get(key)
        if path is None:
            raise DriverError(f"{self.machine_id}: no node '{key}' in the node map",
                              field=f"machines.{self.machine_id}.driver.nodes")
        node = self._run(self._resolve(self._client, path), what=f"resolve {key}")
        self._nodes[key] = node
        return node

    def read(self, key: str) -> Any:
        """Read a mapped variable (``state``, ``progress``, ... or any key of the node map)."""
        node = self._node(key)
        self.reads += 1
        return self._run(node.read_value(), what=f"read {key}")

    async def _typed_write(self, key: str, node: Any, value: Any) -> None:
        vt = self._node_types.get(key)
        if vt is None:
            vt = await node.read_data_type_as_variant_type()
            self._node_types[key] = vt
        if vt in (ua.VariantType.Double, ua.VariantType.Float):
            value = float(value)
        elif vt in (ua.VariantType.Int16, ua.VariantType.Int32, ua.VariantType.Int64, ua.VariantType.UInt16,
                    ua.VariantType.UInt32, ua.VariantType.UInt64, ua.VariantType.Byte, ua.VariantType.SByte):
            if isinstance(value, float) and not value.is_integer():
                raise ProgramRejected(f"{self.machine_id}: {key} is an integer ({vt.name}); {value} is not")
            value = int(value)
        elif vt == ua.VariantType.Boolean:
            value = bool(value)
        elif vt == ua.VariantType.String:
            value = str(value)
        await node.write_value(ua.DataValue(ua.Variant(value, vt)))

    def write(self, key: str, value: Any) -> None:
        """Write a mapped variable with the server's data type (read once and cached)."""
        node = self._node(key)
        self.writes += 1
        self._run(self._typed_write(key, node, value), what=f"write {key}")

    def call(self, method: str, *args: Any) -> List[Any]:
        """Call a mapped method (``start``, ``hold``, ``set_parameter``...) with arguments."""
        if self._client is None or not self._connected:
            raise ConnectionLost(f"{self.machine_id}: not connected to {self.endpoint}")
        self.calls += 1
        return self._run(self._call(method, args), what=f"method {method}")

    async def _call(self, method: str, args: Tuple[Any, ...]) -> List[Any]:
        cache = getattr(self, "_method_nodes", {})
        if method not in cache:
            path = self.methods_cfg.get(method)
            if path is None:
                raise DriverError(f"{self.machine_id}: no method '{method}' in the method map",
                                  field=f"machines.{self.machine_id}.driver.methods")
            assert self._client is not None
            mnode = await self._resolve(self._client, path)
            cache[method] = (await mnode.get_parent(), mnode)
            self._method_nodes = cache
        parent, mnode = cache[method]
        out = await parent.call_method(mnode, *args)
        if out is None:
            return []
        return list(out) if isinstance(out, (list, tuple)) else [out]

    # -- the Machine API -------------------------------------------------------------------------
    def state(self) -> str:
        if not self._connected:
            raise ConnectionLost(f"{self.machine_id}: OPC UA connection down (reconnecting)")
        with self._cv:
            st = self._values.get("state")
        return str(st) if st is not None else "Idle"

    def _param_key(self, name: str) -> str:
        key = f"param.{name}"
        if key not in self.nodes_cfg:
            folder = self.nodes_cfg.get("parameters") or self.nodes_cfg["state"].rsplit("/", 1)[0] + "/2:Parameters"
            if folder.startswith(("ns=", "i=")):
                raise ProgramRejected(f"{self.machine_id}: map 'param.{name}' to a node id")
            ns = folder.rsplit("/", 1)[-1].split(":", 1)[0]
            self.nodes_cfg[key] = f"{folder}/{ns}:{name}"
        return key

    def run_program(self, program: Program, parameters: Dict[str, float],
                    progress: Optional[ProgressCallback] = None, timeout: Optional[float] = None) -> ProgramResult:
        if program.name is None:
            raise ProgramRejected(f"{self.machine_id} runs programs stored on the machine; give program: "
                                  "{name: ...}", hint="G-code text goes to serial machines")
        for name, value in parameters.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProgramRejected(f"parameter '{name}' must be a number, not {value!r}")
        t0 = time.monotonic()
        st = self.state()
        if st == "Complete":
            self.call("reset")
            self._wait_state({"Idle"}, 5.0)
        elif st != "Idle":
            raise MachineFault(f"{self.machine_id} is {st}, not Idle; cannot start",
                               hint="reset() (and clear an alarm) first")
        self.write("program", program.name)
        for name, value in parameters.items():
            key = self._param_key(name)
            try:
                self.write(key, value)
            except (MachineFault, DriverError) as exc:
                if isinstance(exc, (ConnectionLost, DriverTimeout)):
                    raise
                raise ProgramRejected(f"{self.machine_id}: parameter '{name}' cannot be written: {exc.message}",
                                      hint="the program does not take it, or the node map lacks it") from exc
        parts_before = self._values.get("part_count")
        self._stop_requested = False
        try:
            self.call("start")
        except MachineFault as exc:
            raise ProgramRejected(f"{self.machine_id}: Start of '{program.name}' refused: {exc.message}",
                                  hint="is the program on the machine, and the machine Idle?") from exc
        deadline = time.monotonic() + timeout if timeout else None
        started = False
        last = -1.0
        while True:
            with self._cv:
                self._cv.wait(0.1)
                st = self._values.get("state")  # type: ignore[assignment]
                prog = self._values.get("progress") or 0.0
                alarm = self._values.get("alarm") or ""
                parts = self._values.get("part_count")
            if not self._connected:
                if deadline is not None and time.monotonic() > deadline:
                    raise ConnectionLost(f"{self.machine_id}: connection down and program not finished in "
                                         f"{timeout:g} s")
                continue
            if st not in ("Idle", "Complete", None):
                started = True
            if progress is not None and prog != last:
                last = prog
                progress(Progress(int(round(float(prog) * 1000)), 1000, "permille", str(st)))
            if st == "Complete" and (started or (parts is not None and parts != parts_before)):
                return ProgramResult("complete", duration=time.monotonic() - t0,
                                     details={"part_count": parts, "outages": len(self.outages),
                                              "reconnects": self.reconnects})
            if st == "Aborted":
                raise MachineFault(f"{self.machine_id}: program '{program.name}' aborted: {alarm or 'no alarm text'}",
                                   hint="clear the alarm on the machine, then reset()")
            if st == "Stopped" and started:
                return ProgramResult("stopped", duration=time.monotonic() - t0, details={"part_count": parts})
            if deadline is not None and time.monotonic() > deadline:
                raise DriverTimeout(f"{self.machine_id}: program '{program.name}' not finished within {timeout:g} s "
                                    f"(state {st}, progress {float(prog):.0%})")

    def _wait_state(self, states: set, seconds: float) -> str:
        end = time.monotonic() + seconds
        while True:
            st = self.state()
            if st in states:
                return st
            if time.monotonic() > end:
                raise DriverTimeout(f"{self.machine_id}: state {st}, expected {sorted(states)} within {seconds:g} s")
            with self._cv:
                self._cv.wait(0.05)

    def hold(self) -> None:
        self.call("hold")

    def resume(self) -> None:
        self.call("unhold")

    def stop(self) -> None:
        self._stop_requested = True
        self.call("stop")

    def reset(self) -> None:
        st = self.state()
        if st in ("Aborting", "Stopping", "Completing", "Resetting", "Clearing"):
            st = self._wait_state({"Aborted", "Stopped", "Complete", "Idle"}, 5.0)
        if st == "Aborted":
            self.call("clear")
            st = self._wait_state({"Stopped"}, 5.0)
        if st in ("Complete", "Stopped"):
            self.call("reset")
            self._wait_state({"Idle"}, 5.0)

    def counters(self) -> Dict[str, int]:
        return {"calls": self.calls, "reads": self.reads, "writes": self.writes, "reconnects": self.reconnects,
                "outages": len(self.outages)}

    def health(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"protocol": "opcua", "endpoint": self.endpoint, **self.counters()}
        if self.security is not None:
            details["security"] = f"{self.security.policy}/{self.security.mode}"
        if self.outages:
            details["last_outage"] = dict(self.outages[-1])
        if not self._connected:
            return {"level": "error", "message": f"disconnected from {self.endpoint}, reconnecting", **details}
        alarm = self._values.get("alarm")
        details["state"] = self._values.get("state")
        if alarm:
            return {"level": "error", "message": f"alarm: {alarm}", **details}
        if self.outages and self.outages[-1]["end"] and time.time() - self.outages[-1]["end"] < 60:
            return {"level": "warn", "message": f"reconnected after a {self.outages[-1]['seconds']} s outage",
                    **details}
        return {"level": "ok", "message": f"OPC UA {details['state']}", **details}
