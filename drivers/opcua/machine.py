"""An OPC UA machine (asyncua client) behind the synchronous :class:`anycell.drivers.machine.Machine` API.

asyncua is asynchronous; the executor is not. The driver runs one asyncio loop in a daemon thread
and every public call submits a coroutine to it with the config's ``timeout``, so no call can hang.
Every failure is an :class:`anycell.errors.DriverError` subclass with a hint: ``DriverTimeout``,
``ConnectionLost`` (and its fatal kinds ``ServerMismatch``/``LoginRefused``), ``MachineFault`` (a Bad
status, an alarm, a non-zero ``ReturnStatus``), ``ProgramRejected`` (a value that does not fit the
server's type, refused before anything is sent) and ``NotTrusted``.

What the machine looks like comes from the ``profile`` (see :mod:`.profiles`): ``custom`` (a node
map), or ``packml`` (OPC 30050, only ``object`` needed). Methods are always called on the object
they belong to in the configured path (or on ``object``), also when the server declares them only
on the ObjectType; their arguments are typed from the method's ``InputArguments``.

A watchdog reads the server status every ``watchdog_interval`` s. When the connection drops the
driver reconnects with a capped exponential backoff, looks the namespaces up again (by URI),
resolves every node again, restores the subscription and reads the true current state. A server
that is no longer the configured one (namespace gone, certificate changed) or that refuses the login
stops the retries: the error is on ``health()`` and every call raises it. A machine that comes back
Idle or Aborted while a program was running fails that program at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import struct
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from asyncua import Client, ua
from asyncua.common.ua_utils import data_type_to_variant_type

from anycell.errors import ConfigError, ConnectionLost, DriverError, DriverTimeout, MachineFault, ProgramRejected
from anycell.job import Program
from anycell.packml_model import STATES as _PACKML_NAMES

from ..machine import DEFAULT_METHODS, DEFAULT_NODES, Machine, ProgramResult, Progress, ProgressCallback
from .addressing import is_absolute, is_node_id, node_id, parse_path, qualified, split_path
from .errors import LoginRefused, NotTrusted, ServerMismatch
from .profiles import (
    JOB_STATES, JOBS_METHODS, JOBS_NODES, PACKML_METHODS, PACKML_NODES, PACKML_PRODUCE, WATCHED, combine_packml,
    job_id, job_state,
)
from .session import SessionFactory
from .values import ArgSpec, build_structure, check_scalar, encode_args, return_status, state_of

log = logging.getLogger(__name__)
CONNECTION_ERRORS = (ConnectionError, OSError, asyncio.IncompleteReadError, ua.UaError, EOFError)
#: Errors that retrying cannot cure.
FATAL = (ServerMismatch, LoginRefused, NotTrusted)
LOCAL_ERRORS = (struct.error, TypeError, ValueError, AttributeError, KeyError, OverflowError)


class _Handler:
    """Subscription callbacks, called in the loop thread."""

    def __init__(self, owner: "OpcUaMachine") -> None:
        self.owner = owner

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.owner._on_value(node.nodeid, val)

    def status_change_notification(self, status: Any) -> None:
        log.info("subscription status change: %s", status)


class _Method:
    """A resolved method: the object it is called on, its node, its argument types, output names."""

    __slots__ = ("owner", "method", "specs", "outputs")

    def __init__(self, owner: ua.NodeId, method: ua.NodeId, specs: Optional[List[ArgSpec]], outputs: List[str]):
        self.owner, self.method, self.specs, self.outputs = owner, method, specs, outputs


class OpcUaMachine(Machine):
    """A machine reached over OPC UA. See the module docstring."""

    protocol = "opcua"

    def __init__(self, machine_cfg: Any, endpoint: str, *, watchdog_interval: float = 0.5,
                 reconnect_interval: float = 0.3, max_backoff: float = 5.0,
                 subscription_period_ms: int = 50) -> None:
        self.cfg = machine_cfg
        self.machine_id = machine_cfg.id
        self.endpoint = endpoint
        drv = machine_cfg.driver
        opc = drv.kind == "opcua"
        self.profile: str = getattr(drv, "profile", "custom") if opc else "custom"
        self.object_path: Optional[str] = getattr(drv, "object", None) if opc else None
        self.state_values: Dict[str, str] = dict(getattr(drv, "state_values", {}) or {}) if opc else {}
        self.progress_scale: float = float(getattr(drv, "progress_scale", 1.0)) if opc else 1.0
        self.products: Dict[str, int] = dict(getattr(drv, "products", {}) or {}) if opc else {}
        self._field = f"machines.{self.machine_id}.driver"
        if self.profile in ("packml", "machinery_jobs"):
            if not self.object_path:
                raise ConfigError(f"machine '{self.machine_id}': profile {self.profile} needs 'object'",
                                  field=f"{self._field}.object",
                                  hint="the browse path or node id of the PackML instance, e.g. "
                                       "0:Objects/{urn:vendor:machine}:Filler")
        if self.profile == "packml":
            self.nodes_cfg: Dict[str, str] = dict(PACKML_NODES)
            self.methods_cfg: Dict[str, str] = dict(PACKML_METHODS)
            self._optional = set(PACKML_NODES) - {"state.base", "state.machine", "state.execute"}
        elif self.profile == "machinery_jobs":
            self.nodes_cfg = dict(JOBS_NODES)
            self.methods_cfg = dict(JOBS_METHODS)
            self._optional = set()
        else:
            self.nodes_cfg = dict(DEFAULT_NODES)
            self.methods_cfg = dict(DEFAULT_METHODS)
            self._optional = set(DEFAULT_NODES) - {"state"}
        if opc:
            self.nodes_cfg.update(drv.nodes or {})
            self.methods_cfg.update(drv.methods or {})
            self._optional -= set(drv.nodes or {})
        self.timeout = float(drv.timeout) if opc else 5.0
        self.sessions = SessionFactory(self.machine_id, endpoint, drv, self.timeout)
        self.security = drv.security if opc and drv.security.policy != "None" else None
        self.watchdog_interval = watchdog_interval
        self.reconnect_interval = reconnect_interval
        self.max_backoff = max_backoff
        self.subscription_period_ms = subscription_period_ms
        self._start_loop()
        self._client: Optional[Client] = None
        self._namespaces: List[str] = []
        self._object: Any = None
        self._nodes: Dict[str, Any] = {}
        self._node_types: Dict[str, ua.VariantType] = {}
        self._methods: Dict[str, _Method] = {}
        self._by_id: Dict[Any, str] = {}
        self._values: Dict[str, Any] = {}
        self._types_loaded = False
        self._cv = threading.Condition()
        self._connected = False
        self._closing = False
        self._fatal: Optional[DriverError] = None
        self._watchdog: Optional[concurrent.futures.Future] = None
        self.outages: List[Dict[str, Any]] = []
        self.reconnects = 0
        self.calls = 0
        self.reads = 0
        self.writes = 0
        self._stop_requested = False
        self._state_listeners: List[Any] = []
        self._last_state: Optional[str] = None
        self._job: Optional[str] = None  # machinery_jobs: the JobOrderID this driver stored and started

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout: Optional[float] = None, what: str = "call") -> Any:
        """Run a coroutine in the loop thread, with a timeout, mapping every error to a DriverError.

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
        except DriverError:
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise DriverTimeout(f"{self.machine_id}: OPC UA {what} got no answer within {t:g} s",
                                hint=f"is {self.endpoint} reachable?") from exc
        except ua.UaStatusCodeError as exc:
            if exc.code in (ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadTypeMismatch,
                            ua.StatusCodes.BadArgumentsMissing, ua.StatusCodes.BadTooManyArguments,
                            ua.StatusCodes.BadOutOfRange):
                raise ProgramRejected(f"{self.machine_id}: OPC UA {what} refused its arguments: {exc}",
                                      hint="check the values against the method's InputArguments") from exc
            if exc.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadNotWritable,
                            ua.StatusCodes.BadNotExecutable):
                raise MachineFault(f"{self.machine_id}: OPC UA {what} not allowed: {exc}",
                                   hint="the logged-in user lacks the right, or the node is read-only") from exc
            raise MachineFault(f"{self.machine_id}: OPC UA {what} failed: {exc}",
                               hint="the machine refused it in its current state") from exc
        except asyncio.CancelledError as exc:
            raise ConnectionLost(f"{self.machine_id}: OPC UA {what} was cancelled (connection closing)",
                                 hint="the connection was closed or is being re-established") from exc
        except LOCAL_ERRORS as exc:
            raise ProgramRejected(f"{self.machine_id}: OPC UA {what}: a value does not fit the server's type: "
                                  f"{exc!r}", hint="check the value against the node's or argument's data type") \
                from exc
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"{self.machine_id}: OPC UA {what} failed, connection lost: {exc!r}",
                                 hint=f"is the server at {self.endpoint} running?") from exc

    def _on_value(self, nodeid: Any, val: Any) -> None:
        key = self._by_id.get(nodeid)
        if key is None:
            return
        with self._cv:
            self._values[key] = val
            st = self._compute_state()
            changed = st != self._last_state
            self._last_state = st
            self._cv.notify_all()
        if key.startswith("state") and changed and st is not None:
            for fn in list(self._state_listeners):
                try:
                    fn(st)
                except Exception:  # noqa: BLE001 - a listener must not break the subscription
                    log.exception("%s: state listener failed", self.machine_id)

    def _compute_state(self) -> Optional[str]:
        v = self._values
        if self.profile == "machinery_jobs":
            entries = v.get("job_list") or []
            mine = next((e for e in entries if job_id(e) == self._job), None) if self._job else None
            if mine is not None:
                return JOB_STATES.get(job_state(mine) or "", "Idle")
            if self._job is not None and self._last_state in ("Execute", "Starting", "Held"):
                return "Complete"  # our job left the list while running: the machine removed it when done
            busy = any(job_state(e) in ("Running", "Interrupted") for e in entries)
            return "Execute" if busy else "Idle"
        if self.profile == "packml":
            parts = [state_of(v.get(k), self.state_values) for k in ("state.base", "state.machine", "state.execute")]
            return combine_packml(*parts)
        raw = v.get("state")
        if raw is None:
            return None
        name = state_of(raw, self.state_values)
        return name if name is not None else _text(raw)

    def add_state_listener(self, fn: Any) -> None:
        """Call ``fn(state_name)`` on every state change the subscription reports (loop thread;
        keep it short). Listeners survive reconnects: the new subscription feeds them too."""
        self._state_listeners.append(fn)

    # -- connecting ------------------------------------------------------------------------------
    async def _open(self) -> None:
        client = await self.sessions.open()
        try:
            self._namespaces = await client.get_namespace_array()
            self._object = None
            if self.object_path:
                self._object = await self._resolve(client, self.object_path, f"{self._field}.object")
            nodes: Dict[str, Any] = {}
            for key, path in self.nodes_cfg.items():
                if key == "parameters" or key.startswith("param."):
                    continue
                try:
                    nodes[key] = await self._resolve(client, path, f"{self._field}.nodes.{key}")
                except DriverError:
                    if key in self._optional:
                        continue  # an optional node this server does not have
                    raise
            if self.profile in ("packml", "machinery_jobs"):
                await self._load_types(client)
            self._client = client
            self._nodes = nodes
            self._methods = {}
            self._by_id = {n.nodeid: k for k, n in nodes.items()}
            watch = [nodes[k] for k in WATCHED.get(self.profile, WATCHED["custom"]) if k in nodes]
            if watch:
                values = await client.read_values(watch)
                for node, val in zip(watch, values):
                    self._on_value(node.nodeid, val)
                sub = await client.create_subscription(self.subscription_period_ms, _Handler(self))
                await sub.subscribe_data_change(watch)
        except BaseException:
            self._client = None
            try:
                await asyncio.wait_for(client.disconnect(), 1.0)
            except Exception:  # noqa: BLE001
                pass
            raise

    async def _load_types(self, client: Client) -> None:
        """The server's structures (PackML product, descriptors...) as Python classes, once per session."""
        try:
            await client.load_data_type_definitions()
            self._types_loaded = True
        except Exception as exc:  # noqa: BLE001 - a server without DataTypeDefinitions: scalars still work
            log.warning("%s: could not load the server's data types: %r", self.machine_id, exc)

    async def _resolve(self, client: Client, path: str, field: str, base: Any = None) -> Any:
        """A node from a node id or a browse path (absolute, or relative to ``base``/the object)."""
        try:
            if is_node_id(path):
                node = client.get_node(node_id(path, self._namespaces, field))
                await node.read_browse_name()
                return node
            segs = parse_path(path, field)
            if is_absolute(path):
                start = client.nodes.root
                if segs and segs[0].name == "Root" and segs[0].ns in (0, None):
                    segs = segs[1:]
            else:
                start = base if base is not None else self._object
                if start is None:
                    raise DriverError(f"{self.machine_id}: '{path}' is relative but no 'object' is configured",
                                      field=field, hint="start it at 0:Objects/..., or set driver.object")
            if not segs:
                return start
            return await start.get_child([qualified(s, self._namespaces, path) for s in segs])
        except ua.UaStatusCodeError as exc:
            raise DriverError(f"{self.machine_id}: '{path}' not found on the server ({type(exc).__name__})",
                              field=field, hint="browse the server (e.g. with an OPC UA client) and fix the path"
                              ) from exc

    def _start_loop(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"opcua-{self.machine_id}", daemon=True)
        self._thread.start()

    def connect(self) -> None:
        self._closing = False
        self._fatal = None
        if not self._thread.is_alive():
            self._start_loop()
        self._run(self._open(), timeout=self.timeout * 3, what="connect")
        self._connected = True
        self._watchdog = asyncio.run_coroutine_threadsafe(self._watch(), self._loop)

    async def _watch(self) -> None:
        """Notice a dead connection, reconnect with capped backoff, or give up on a fatal error."""
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
            backoff = self.reconnect_interval
            while not self._closing:
                try:
                    await asyncio.wait_for(self._open(), self.timeout * 2)
                    break
                except FATAL as exc:
                    self._give_up(exc, outage)
                    return
                except DriverError as exc:
                    if isinstance(exc, (ConnectionLost, DriverTimeout)):
                        log.debug("%s: reconnect failed: %r", self.machine_id, exc)
                    else:  # the server is up but a configured node or namespace is gone
                        self._give_up(ServerMismatch(
                            f"{exc.message}, after the server came back", field=exc.field,
                            hint="its address space changed (a namespace index moved?): name namespaces by URI "
                                 "({uri}:Name, nsu=...) so the driver follows them"), outage)
                        return
                except Exception as exc:  # noqa: BLE001 - the server is not back yet
                    log.debug("%s: reconnect failed: %r", self.machine_id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            if self._closing:
                return
            outage["end"] = time.time()
            outage["seconds"] = round(time.monotonic() - t0, 3)
            self.reconnects += 1
            self._connected = True
            log.warning("%s: OPC UA reconnected after %.2f s; state %s", self.machine_id, outage["seconds"],
                        self._last_state)
            with self._cv:
                self._cv.notify_all()

    def _give_up(self, exc: DriverError, outage: Dict[str, Any]) -> None:
        log.error("%s: not reconnecting: %s (%s)", self.machine_id, exc.message, exc.hint)
        outage["reason"] = exc.message
        self._fatal = exc
        with self._cv:
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
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2.0)

    def __del__(self) -> None:  # the loop thread is a daemon; stop it when the driver goes
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:  # noqa: BLE001
            pass

    # -- typed access ----------------------------------------------------------------------------
    def _check_up(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._client is None or not self._connected:
            raise ConnectionLost(f"{self.machine_id}: not connected to {self.endpoint}",
                                 hint="connect() first, or wait for the reconnect")

    def _node(self, key: str) -> Any:
        self._check_up()
        if key in self._nodes:
            return self._nodes[key]
        path = self.nodes_cfg.get(key)
        if path is None:
            raise DriverError(f"{self.machine_id}: no node '{key}' in the node map",
                              field=f"{self._field}.nodes", hint=f"add nodes.{key}: <node id or browse path>")
        assert self._client is not None, "resolve is called only when connected"
        node = self._run(self._resolve(self._client, path, f"{self._field}.nodes.{key}"), what=f"resolve {key}")
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
        if vt == ua.VariantType.ExtensionObject and not isinstance(value, ua.Variant):
            value = await self._structure_value(node, value, key)
        else:
            value = check_scalar(value, vt, f"{self.machine_id}: {key}")
        await node.write_value(ua.DataValue(ua.Variant(value, vt)))

    async def _structure_value(self, node: Any, value: Any, key: str) -> Any:
        """A mapping (or a list of them) as the node's structure type, from the server's type definitions."""
        dtype = await node.read_data_type()
        cls = ua.extension_objects_by_datatype.get(dtype)
        if cls is None and self._client is not None:
            await self._load_types(self._client)
            cls = ua.extension_objects_by_datatype.get(dtype)
        if cls is None:
            raise ProgramRejected(f"{self.machine_id}: {key} holds a structure ({dtype.to_string()}) the server "
                                  "does not define", hint="the server must expose DataTypeDefinitions")
        what = f"{self.machine_id}: {key}"
        if isinstance(value, (list, tuple)):
            return [build_structure(cls, v, f"{what}[{i}]") for i, v in enumerate(value)]
        return build_structure(cls, value, what)

    def write(self, key: str, value: Any) -> None:
        """Write a mapped variable with the server's data type (read once and cached)."""
        node = self._node(key)
        self.writes += 1
        self._run(self._typed_write(key, node, value), what=f"write {key}")

    def call(self, method: str, *args: Any) -> List[Any]:
        """Call a mapped method (``start``, ``hold``, ``set_parameter``...) on its object, with arguments
        typed from its ``InputArguments``; a non-zero ``ReturnStatus`` output is a MachineFault."""
        self._check_up()
        self.calls += 1
        m = self._methods.get(method)
        if m is None:
            return self._run(self._call(method, args), what=f"method {method}")
        return self._run(self._call_resolved(method, m, args), what=f"method {method}")

    async def _call(self, method: str, args: Sequence[Any]) -> List[Any]:
        m = await self._method(method)
        return await self._call_resolved(method, m, args)

    async def _call_resolved(self, method: str, m: _Method, args: Sequence[Any]) -> List[Any]:
        client = self._client
        if client is None:
            raise ConnectionLost(f"{self.machine_id}: not connected", hint="wait for the reconnect")
        variants = encode_args(m.specs, args, f"{self.machine_id}: method {method}")
        req = ua.CallMethodRequest(ObjectId=m.owner, MethodId=m.method, InputArguments=variants)
        (res,) = await client.uaclient.call([req])
        bad = [i for i, s in enumerate(res.InputArgumentResults or []) if not s.is_good()]
        if bad and m.specs:
            names = ", ".join(m.specs[i].name for i in bad if i < len(m.specs))
            raise ProgramRejected(f"{self.machine_id}: method {method} refused argument(s) {names} "
                                  f"({res.StatusCode.name})", hint="check the values the machine accepts")
        res.StatusCode.check()
        outs = [v.Value if isinstance(v, ua.Variant) else v for v in (res.OutputArguments or [])]
        rs = return_status(outs, m.outputs)
        if rs not in (None, 0):
            raise MachineFault(f"{self.machine_id}: method {method} returned ReturnStatus {rs} (0x{rs:X})",
                               hint="the machine refused the request; see its ReturnStatus bits in its manual "
                                    "(OPC 40001-3: bit 0 means 'not executed')")
        return outs

    async def _method(self, key: str) -> _Method:
        """Resolve a method: its owner object from the configured path (never ``get_parent``), the method
        on that object or, where the server declares it only there, on the object's type."""
        if key in self._methods:
            return self._methods[key]
        client = self._client
        assert client is not None
        path = self.methods_cfg.get(key)
        field = f"{self._field}.methods.{key}"
        if path is None:
            raise DriverError(f"{self.machine_id}: no method '{key}' in the method map", field=f"{self._field}.methods",
                              hint=f"add methods.{key}: <browse path of the method>")
        if is_node_id(path):
            mnode = await self._resolve(client, path, field)
            owner = self._object if self._object is not None else await mnode.get_parent()
        else:
            segs = parse_path(path, field)
            owner_path = "/".join(s.text() for s in segs[:-1])
            if is_absolute(path):
                owner = await self._resolve(client, owner_path, field) if owner_path else client.nodes.root
            elif owner_path:
                owner = await self._resolve(client, owner_path, field)
            else:
                if self._object is None:
                    raise DriverError(f"{self.machine_id}: method '{path}' is relative but no 'object' is set",
                                      field=field, hint="give the full browse path, or set driver.object")
                owner = self._object
            qn = qualified(segs[-1], self._namespaces, path)
            try:
                mnode = await owner.get_child([qn])
            except ua.UaStatusCodeError:
                mnode = await self._type_method(owner, qn, path, field)
        specs, outputs = await self._signature(client, mnode)
        m = _Method(owner.nodeid, mnode.nodeid, specs, outputs)
        self._methods[key] = m
        return m

    async def _type_method(self, owner: Any, qn: ua.QualifiedName, path: str, field: str) -> Any:
        """The method as declared on the owner's ObjectType (or a supertype): called on the owner."""
        client = self._client
        assert client is not None
        typ = client.get_node(await owner.read_type_definition())
        for _ in range(16):
            try:
                return await typ.get_child([qn])
            except ua.UaStatusCodeError:
                supers = await typ.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
                if not supers:
                    break
                typ = supers[0]
        raise DriverError(f"{self.machine_id}: method '{path}' found neither on its object nor on its type",
                          field=field, hint="browse the server and fix the method path")

    async def _signature(self, client: Client, mnode: Any) -> Tuple[Optional[List[ArgSpec]], List[str]]:
        specs: Optional[List[ArgSpec]] = []
        outputs: List[str] = []
        for prop, out in (("InputArguments", False), ("OutputArguments", True)):
            try:
                args = await (await mnode.get_child([ua.QualifiedName(prop, 0)])).read_value()
            except ua.UaStatusCodeError:
                continue
            if out:
                outputs = [a.Name or "" for a in args or []]
                continue
            built: List[ArgSpec] = []
            for a in args or []:
                built.append(await self._arg_spec(client, a))
            specs = built
        return specs, outputs

    async def _arg_spec(self, client: Client, arg: Any) -> ArgSpec:
        dtype: ua.NodeId = arg.DataType
        array = arg.ValueRank is not None and arg.ValueRank >= 0
        if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) and 1 <= dtype.Identifier <= 25:
            return ArgSpec(arg.Name or "", ua.VariantType(dtype.Identifier), array)
        cls = ua.extension_objects_by_datatype.get(dtype)
        if cls is None and not self._types_loaded:
            await self._load_types(client)
            cls = ua.extension_objects_by_datatype.get(dtype)
        if cls is not None:
            return ArgSpec(arg.Name or "", ua.VariantType.ExtensionObject, array, cls)
        try:
            vt = await data_type_to_variant_type(client.get_node(dtype))
        except Exception:  # noqa: BLE001 - an unknown type: let the value choose
            vt = ua.VariantType.Variant
        return ArgSpec(arg.Name or "", vt, array)

    # -- the Machine API -------------------------------------------------------------------------
    def state(self) -> str:
        if self._fatal is not None:
            raise self._fatal
        if not self._connected:
            raise ConnectionLost(f"{self.machine_id}: OPC UA connection down (reconnecting)",
                                 hint=f"is the server at {self.endpoint} running?")
        with self._cv:
            st = self._compute_state()
        return st if st is not None else "Idle"

    def _param_key(self, name: str) -> str:
        key = f"param.{name}"
        if key not in self.nodes_cfg:
            folder = self.nodes_cfg.get("parameters") or "/".join(
                split_path(self.nodes_cfg["state"])[:-1]) + "/2:Parameters"
            if is_node_id(folder):
                raise ProgramRejected(f"{self.machine_id}: map 'param.{name}' to a node id",
                                      hint=f"add nodes.param.{name}: <node id>")
            last = parse_path(folder)[-1]
            self.nodes_cfg[key] = f"{folder}/{last.text().rsplit(':', 1)[0]}:{name}" if (
                last.ns is not None or last.uri is not None) else f"{folder}/{name}"
        return key

    def _prepare_packml(self, program: Program, parameters: Dict[str, float]) -> None:
        """OPC 30050: unit mode Produce, the product (ProductID = program name) with its process variables."""
        try:
            product = int(self.products[program.name]) if program.name in self.products else int(str(program.name))
        except ValueError:
            raise ProgramRejected(f"{self.machine_id}: a PackML machine runs products by number; "
                                  f"'{program.name}' is not one",
                                  hint=f"name the ProductID, or map it: driver.products: {{{program.name}: <id>}}") \
                from None
        check_scalar(product, ua.VariantType.Int32, f"{self.machine_id}: ProductID")
        if "unit_mode" in self._nodes:
            mode = self.read("unit_mode")
            if int(getattr(mode, "value", mode) or 0) != PACKML_PRODUCE:
                self.call("set_unit_mode", PACKML_PRODUCE)
        variables = [{"ID": i + 1, "Name": name, "Value": float(value)}
                     for i, (name, value) in enumerate(sorted(parameters.items()))]
        try:
            self.call("set_product", [{"ProductID": product, "ProcessVariables": variables, "Ingredients": []}])
        except (MachineFault, ProgramRejected) as exc:
            raise ProgramRejected(f"{self.machine_id}: product {product} refused: {exc.message}",
                                  hint="is the product known to the machine?") from exc

    def run_program(self, program: Program, parameters: Dict[str, float],
                    progress: Optional[ProgressCallback] = None, timeout: Optional[float] = None) -> ProgramResult:
        if program.name is None:
            raise ProgramRejected(f"{self.machine_id} runs programs stored on the machine; give program: "
                                  "{name: ...}", hint="G-code text goes to serial machines")
        for name, value in parameters.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProgramRejected(f"parameter '{name}' must be a number, not {value!r}",
                                      hint="parameters are numbers")
        t0 = time.monotonic()
        st: Optional[str] = self.state()
        if self.profile == "machinery_jobs" and st in ("Complete", "Aborted"):
            self.reset()
            st = self.state()
        if st == "Complete":
            self.call("reset")
            st = self._wait_state({"Idle"}, 5.0)
        elif st == "Stopped" and self.profile == "packml":
            self.call("reset_stopped")
            st = self._wait_state({"Idle"}, 5.0)
        if st != "Idle":
            hint = "reset() (and clear an alarm) first"
            if self.profile == "custom" and st not in _PACKML_NAMES:
                hint = f"map the machine's state '{st}' to a PackML name with driver.state_values"
            raise MachineFault(f"{self.machine_id} is {st}, not Idle; cannot start", hint=hint)
        if self.profile == "packml":
            self._prepare_packml(program, parameters)
            start_args: Tuple[Any, ...] = ([],)
        elif self.profile == "machinery_jobs":
            start_args = (self._store_job(program, parameters), [])
        else:
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
            start_args = ()
        parts_before = _count(self._values.get("part_count"))
        reconnects_before = self.reconnects
        self._stop_requested = False
        try:
            self.call("start", *start_args)
        except MachineFault as exc:
            raise ProgramRejected(f"{self.machine_id}: Start of '{program.name}' refused: {exc.message}",
                                  hint="is the program on the machine, and the machine Idle?") from exc
        deadline = time.monotonic() + timeout if timeout else None
        started = False
        last = -1.0
        while True:
            with self._cv:
                self._cv.wait(0.1)
                st = self._compute_state()
                prog = _number(self._values.get("progress")) * self.progress_scale
                alarm = _text(self._values.get("alarm"))
                parts = _count(self._values.get("part_count"))
            if self._fatal is not None:
                raise self._fatal
            if not self._connected:
                if deadline is not None and time.monotonic() > deadline:
                    raise ConnectionLost(f"{self.machine_id}: connection down and program not finished in "
                                         f"{timeout:g} s", hint=f"is the server at {self.endpoint} running?")
                continue
            if self.reconnects != reconnects_before and started and st in ("Idle", "Aborted", "Stopped"):
                raise MachineFault(f"{self.machine_id}: after a connection outage the machine is {st}: program "
                                   f"'{program.name}' did not survive (not finished, no part counted)",
                                   hint="check the machine and the part, then run the step again")
            if st not in ("Idle", "Complete", None):
                started = True
            if progress is not None and prog != last and "progress" in self._nodes:
                last = prog
                progress(Progress(int(round(prog * 1000)), 1000, "permille", str(st)))
            if st == "Complete" and self._stop_requested:
                return ProgramResult("stopped", duration=time.monotonic() - t0, details={"part_count": parts})
            if st == "Complete" and (started or (parts is not None and parts != parts_before)):
                if progress is not None and "progress" not in self._nodes:
                    progress(Progress(1000, 1000, "permille", st))
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
                                    f"(state {st}, progress {prog:.0%})", hint="raise the step's timeout?")

    def _store_job(self, program: Program, parameters: Dict[str, float]) -> str:
        """OPC 40001-3: store a job order (work master = the program, parameters as ISA-95 parameters)."""
        job = f"anycell-{self.machine_id}-{uuid.uuid4().hex[:12]}"
        order = {"JobOrderID": job, "WorkMasterID": [{"ID": str(program.name)}],
                 "JobOrderParameters": [{"ID": name, "Value": ua.Variant(float(value), ua.VariantType.Double)}
                                        for name, value in sorted(parameters.items())]}
        try:
            self.call("store", order, [])
        except (MachineFault, ProgramRejected) as exc:
            raise ProgramRejected(f"{self.machine_id}: job order for '{program.name}' refused: {exc.message}",
                                  hint="is the program (work master) known to the machine?") from exc
        self._job = job
        return job

    def _wait_state(self, states: set, seconds: float) -> str:
        end = time.monotonic() + seconds
        while True:
            st = self.state()
            if st in states:
                return st
            if time.monotonic() > end:
                raise DriverTimeout(f"{self.machine_id}: state {st}, expected {sorted(states)} within {seconds:g} s",
                                    hint="the machine did not follow the command")
            with self._cv:
                self._cv.wait(0.05)

    def _job_args(self) -> Tuple[Any, ...]:
        if self._job is None:
            raise MachineFault(f"{self.machine_id}: no job order of this driver on the machine",
                               hint="run_program starts one")
        return (self._job, [])

    def hold(self) -> None:
        if self.profile == "machinery_jobs":
            self.call("pause", *self._job_args())
            return
        self.call("hold")

    def resume(self) -> None:
        if self.profile == "machinery_jobs":
            self.call("resume", *self._job_args())
            return
        self.call("unhold")

    def stop(self) -> None:
        self._stop_requested = True
        if self.profile == "machinery_jobs":
            self.call("stop", *self._job_args())
            return
        self.call("stop")

    def reset(self) -> None:
        st = self.state()
        if self.profile == "machinery_jobs":
            if st in ("Complete", "Aborted") and self._job is not None:
                entries = self._values.get("job_list") or []
                if any(job_id(e) == self._job for e in entries):
                    self.call("clear", *self._job_args())
                self._job = None
            elif st not in ("Idle",):
                raise MachineFault(f"{self.machine_id}: cannot reset while a job is {st}",
                                   hint="stop() or abort the job first")
            return
        if st in ("Aborting", "Stopping", "Completing", "Resetting", "Clearing"):
            st = self._wait_state({"Aborted", "Stopped", "Complete", "Idle"}, 5.0)
        if st == "Aborted":
            self.call("clear")
            st = self._wait_state({"Stopped"}, 5.0)
        if st == "Complete":
            self.call("reset")
            self._wait_state({"Idle"}, 5.0)
        elif st == "Stopped":
            self.call("reset_stopped" if "reset_stopped" in self.methods_cfg else "reset")
            self._wait_state({"Idle"}, 5.0)
        elif st != "Idle":
            raise MachineFault(f"{self.machine_id}: cannot reset from {st}",
                               hint="stop the machine first, or map its state with driver.state_values")

    def counters(self) -> Dict[str, int]:
        return {"calls": self.calls, "reads": self.reads, "writes": self.writes, "reconnects": self.reconnects,
                "outages": len(self.outages)}

    def health(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"protocol": "opcua", "endpoint": self.endpoint, "profile": self.profile,
                                   **self.counters()}
        if self.sessions.describe():
            details["security"] = self.sessions.describe()
        if self.outages:
            details["last_outage"] = dict(self.outages[-1])
        if self._fatal is not None:
            return {"level": "error", "message": f"not reconnecting: {self._fatal.message}",
                    "hint": self._fatal.hint, **details}
        if not self._connected:
            return {"level": "error", "message": f"disconnected from {self.endpoint}, reconnecting", **details}
        alarm = _text(self._values.get("alarm"))
        details["state"] = self._compute_state()
        if alarm:
            return {"level": "error", "message": f"alarm: {alarm}", **details}
        if self.outages and self.outages[-1]["end"] and time.time() - self.outages[-1]["end"] < 60:
            return {"level": "warn", "message": f"reconnected after a {self.outages[-1]['seconds']} s outage",
                    **details}
        return {"level": "ok", "message": f"OPC UA {details['state']}", **details}



def _text(value: Any) -> str:
    """Alarm or state text: a String, a LocalizedText, or PackML's array of alarm structures (``Message``)."""
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, (list, tuple)):
        return "; ".join(_text(getattr(v, "Message", v)) for v in value if v is not None)
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _count(value: Any) -> Optional[int]:
    """A part count: a number, or the sum of PackML count structures (``Count`` fields)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return sum(int(getattr(v, "Count", 0) or 0) for v in value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
