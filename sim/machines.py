"""Start a simulated machine as its own process, on its real transport, from a machine config.

``launch_sim_machine(machine_cfg, workdir)`` picks the simulator from the config (a serial GRBL
or Marlin machine, an OPC UA machine, or ``driver.kind: sim`` with ``protocol``), starts it with
``python -m sim.<module>``, waits (with a timeout) until it has announced its address, and
returns a handle. Point the driver at it with ``open_machine(machine_cfg, handle.address)``.

``faults`` holds simulator command-line options by their long name without dashes, e.g.
``{"corrupt_fraction": 0.05, "time_scale": 0.01, "alarm_at_line": 12}``; ``True`` is a bare
flag. See ``python -m sim.grbl_device --help`` (and marlin_printer, opcua_machine).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

from anycell.cell import MachineConfig
from anycell.childproc import ProcessById, ReadinessWait, guarded_argv
from anycell.errors import ConfigError, DriverError, DriverTimeout

#: The folder holding the ``anycell`` package, so a simulator child imports the same anycell as its parent.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
log = logging.getLogger(__name__)

#: A simulator that keeps using CPU may take this long to get ready on a loaded machine.
READY_MAX_S = 180.0
NOTE_EVERY_S = 5.0
#: Simulated machines run their modelled physical times (heating, cutting) this much faster by
#: default, so a demo takes seconds rather than minutes. 1.0 is real time.
DEFAULT_MACHINE_TIME_SCALE = 0.02
MODULES = {"grbl": "anycell.sim.grbl_device", "marlin": "anycell.sim.marlin_printer", "opcua": "anycell.sim.opcua_machine"}


def sim_protocol(machine_cfg: MachineConfig) -> str:
    """The wire protocol a machine config speaks: grbl, marlin or opcua."""
    drv = machine_cfg.driver
    if drv.kind == "sim":
        return drv.protocol
    if drv.kind == "serial":
        return drv.dialect
    if drv.kind == "opcua":
        return "opcua"
    raise ConfigError(f"machine '{machine_cfg.id}': no simulator for driver kind '{drv.kind}'")


def free_port() -> int:
    """A TCP port that was free a moment ago (the simulator binds it right away)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningSimMachine:
    """A simulated machine process and where to reach it."""

    machine_id: str
    protocol: str
    address: str
    log_path: str
    process: Union[subprocess.Popen, ProcessById]
    argv: List[str] = field(default_factory=list)
    stderr_path: str = ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the simulator (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def log_lines(self) -> List[str]:
        """Everything the simulator logged, one event per line."""
        try:
            with open(self.log_path, "r", encoding="ascii", errors="replace") as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def received_lines(self) -> List[str]:
        """The program lines the firmware accepted, in order (``RX`` entries of the log)."""
        return [ln[3:] for ln in self.log_lines() if ln.startswith("RX ")]

    def __enter__(self) -> "RunningSimMachine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _options(faults: Optional[Dict[str, Any]]) -> List[str]:
    argv: List[str] = []
    for key, value in (faults or {}).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (dict, list)):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


class StartingChild:
    """A simulator child that was started and has not said it is ready yet (see :func:`start_child`)."""

    def __init__(self, proc: Union[subprocess.Popen, ProcessById], argv: List[str], ready: str, stderr_path: str, what: str,
                 ready_timeout: float) -> None:
        self.proc = proc
        self.argv = argv
        self.ready = ready
        self.stderr_path = stderr_path
        self.what = what
        self.ready_timeout = ready_timeout
        self._wait = ReadinessWait(proc.pid, idle_timeout=ready_timeout, max_timeout=max(ready_timeout, READY_MAX_S))

    def wait(self) -> Dict[str, Any]:
        """Wait for the ready file; returns its JSON. Raises (and kills the child) when it died or is stuck."""
        next_note = NOTE_EVERY_S
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                with open(self.stderr_path, encoding="utf-8", errors="replace") as fh:
                    tail = fh.read()[-2000:]
                raise DriverError(f"{self.what} exited with code {self.proc.returncode}: {tail.strip()}",
                                  hint=" ".join(self.argv))
            why = self._wait.expired()
            if why:
                self.kill()
                raise DriverTimeout(f"{self.what} {why}", hint=" ".join(self.argv))
            if self._wait.elapsed() > next_note:
                log.info("still waiting for the %s (%.0f s; the machine is busy)", self.what, self._wait.elapsed())
                next_note += NOTE_EVERY_S
            time.sleep(0.02)
        with open(self.ready, encoding="utf-8") as fh:
            return json.load(fh)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_child(argv: List[str], ready: str, stderr_path: str, what: str, ready_timeout: float) -> StartingChild:
    """Start a simulator child (armed to die with us) without waiting for it; ``.wait()`` for its ready JSON.

    Starting several children first and waiting afterwards lets them boot side by side (an OPC UA
    server loading its nodesets takes seconds). Call it from the thread the child should die with.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(guarded_argv(argv), env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    return StartingChild(proc, argv, ready, stderr_path, what, ready_timeout)


def start_and_wait(argv: List[str], ready: str, stderr_path: str, what: str,
                   ready_timeout: float) -> "tuple[subprocess.Popen, Dict[str, Any]]":
    """Start a simulator child (armed to die with us) and wait for its ready file; (process, ready JSON).

    ``ready_timeout`` is how long the child may go without using any CPU before it counts as stuck;
    while it works (a loaded machine), the wait goes on up to :data:`READY_MAX_S`, with a note every
    few seconds. Used for the simulated machines and the serial fault proxy alike.
    """
    child = start_child(argv, ready, stderr_path, what, ready_timeout)
    proc = child.proc
    assert isinstance(proc, subprocess.Popen)   # started here, so a child of ours
    return proc, child.wait()


class StartingSimMachine:
    """A simulated machine whose process was started; :meth:`wait` returns it running."""

    def __init__(self, mid: str, protocol: str, log_path: str, child: StartingChild) -> None:
        self.mid, self.protocol, self.log_path, self.child = mid, protocol, log_path, child

    def wait(self) -> RunningSimMachine:
        info = self.child.wait()
        c = self.child
        return RunningSimMachine(self.mid, self.protocol, info["address"], self.log_path, c.proc, c.argv,
                                 c.stderr_path)

    def kill(self) -> None:
        self.child.kill()


def launch_sim_machine(machine_cfg: MachineConfig, workdir: str, faults: Optional[Dict[str, Any]] = None,
                       ready_timeout: float = 20.0) -> RunningSimMachine:
    """Start the simulator for ``machine_cfg`` in ``workdir`` and wait until it is ready.

    ``ready_timeout`` is how long the simulator may go without using any CPU before it
    counts as stuck; while it works (a loaded machine), the wait goes on up to
    :data:`READY_MAX_S`, with a note every few seconds.
    """
    return start_sim_machine(machine_cfg, workdir, faults, ready_timeout).wait()


def start_sim_machine(machine_cfg: MachineConfig, workdir: str, faults: Optional[Dict[str, Any]] = None,
                      ready_timeout: float = 20.0) -> StartingSimMachine:
    """Start the simulator for ``machine_cfg`` in ``workdir``; ``.wait()`` until it is ready (see above)."""
    protocol = sim_protocol(machine_cfg)
    workdir = os.path.abspath(workdir)  # the child must find its files whatever the caller's cwd
    os.makedirs(workdir, exist_ok=True)
    mid = machine_cfg.id
    ready = os.path.join(workdir, f"{mid}.ready.json")
    log_path = os.path.join(workdir, f"{mid}.log")
    stderr_path = os.path.join(workdir, f"{mid}.stderr")
    for p in (ready, log_path):
        if os.path.exists(p):
            os.unlink(p)
    argv = [sys.executable, "-m", MODULES[protocol], "--ready-file", ready, "--log", log_path]
    if protocol == "opcua":
        drv = machine_cfg.driver
        path = "/anycell/" + mid
        model: Dict[str, Any] = {}
        if drv.kind == "opcua":
            path = urlparse(drv.endpoint).path or path
            model = {"nodes": dict(drv.nodes), "methods": dict(drv.methods), "object": drv.object,
                     "profile": drv.profile, "products": dict(drv.products)}
        argv += ["--port", str(free_port()), "--path", path]
        if any(model.values()):
            map_file = os.path.join(workdir, f"{mid}.nodes.json")
            with open(map_file, "w", encoding="utf-8") as fh:
                json.dump(model, fh)
            argv += ["--node-map", map_file]
    argv += _options(faults)
    if protocol == "opcua" and getattr(machine_cfg.driver, "profile", None) == "machinery_jobs":
        from .node_opcua import ensure_installed, script

        ensure_installed()  # OPC 40001-3 machines are served by node-opcua (asyncua cannot load the nodesets)
        argv = ["node", script("jobs_server.js")] + argv[3:]
    child = start_child(argv, ready, stderr_path, f"simulator for '{mid}'", ready_timeout)
    return StartingSimMachine(mid, protocol, log_path, child)


def sim_machine_settings(environ: Optional[Mapping[str, str]] = None
                         ) -> Tuple[Optional[float], Optional[Dict[str, Dict[str, Any]]]]:
    """The time scale and fault switches a cell's simulated machines start with, from the environment.

    ``ANYCELL_SIM_TIME_SCALE`` (None: the default) and ``ANYCELL_SIM_FAULTS``, a JSON object of
    switches per machine, e.g. ``{"mill": {"alarm_at_progress": 0.5}}`` (tests, drills). Read in
    one place because ``anycell up`` and the cell agent must start the same machines.
    """
    env = os.environ if environ is None else environ
    scale = float(env["ANYCELL_SIM_TIME_SCALE"]) if env.get("ANYCELL_SIM_TIME_SCALE") else None
    faults = json.loads(env["ANYCELL_SIM_FAULTS"]) if env.get("ANYCELL_SIM_FAULTS") else None
    return scale, faults


def start_sim_machines(machines: Sequence[MachineConfig], workdir: str, time_scale: float,
                       faults: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, StartingSimMachine]:
    """Start every machine's simulator in ``workdir``, side by side, without waiting for any.

    On an error the ones already started are killed before it propagates.
    """
    starting: Dict[str, StartingSimMachine] = {}
    try:
        for m in machines:
            options: Dict[str, Any] = {"time_scale": time_scale}
            options.update((faults or {}).get(m.id, {}))
            starting[m.id] = start_sim_machine(m, workdir, faults=options)
    except BaseException:
        for pending in starting.values():
            pending.kill()
        raise
    return starting


# ---- handing simulators started by ``anycell up`` over to the cell agent
#
# ``anycell up --sim`` starts the simulated machines before it starts the agent: an OPC UA simulator
# takes 1.5-2.5 s to boot, and the agent needs a second of imports before it could start one. The
# agent takes them over from a small JSON file (its ``sim_machines`` parameter) and then waits for
# them, watches and stops them exactly as if it had started them itself.

def write_handover(path: str, starting: Mapping[str, StartingSimMachine], time_scale: float,
                   faults: Optional[Dict[str, Dict[str, Any]]]) -> None:
    """Record the started simulators (and the settings they started with) for the agent to adopt."""
    machines = {mid: {"protocol": sm.protocol, "log": sm.log_path, "pid": sm.child.proc.pid,
                      "argv": sm.child.argv, "ready": sm.child.ready, "stderr": sm.child.stderr_path,
                      "what": sm.child.what, "ready_timeout": sm.child.ready_timeout}
                for mid, sm in starting.items()}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"time_scale": time_scale, "faults": faults or {}, "machines": machines}, fh)
    os.replace(tmp, path)


def adopt_sim_machines(path: str, machines: Sequence[MachineConfig], time_scale: float,
                       faults: Optional[Dict[str, Dict[str, Any]]]) -> Dict[str, StartingSimMachine]:
    """The simulators another process started for these ``machines`` (see :func:`write_handover`).

    Only machines of this cell, started with these settings, are taken; a machine missing from the
    file is left for the caller to start. A file that cannot be read takes nothing (logged).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if doc.get("time_scale") != time_scale or (doc.get("faults") or {}) != (faults or {}):
            log.warning("%s: the simulated machines were started with other settings; starting them again", path)
            return {}
        started = doc["machines"]
        adopted: Dict[str, StartingSimMachine] = {}
        for m in machines:
            info = started.get(m.id)
            if info is None or info.get("protocol") != sim_protocol(m):
                continue
            child = StartingChild(ProcessById(int(info["pid"])), list(info["argv"]), info["ready"], info["stderr"],
                                  info["what"], float(info["ready_timeout"]))
            adopted[m.id] = StartingSimMachine(m.id, info["protocol"], info["log"], child)
        return adopted
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("could not take over the simulated machines from %s (%s); starting them here", path, exc)
        return {}
