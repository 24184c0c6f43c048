"""The network's doors: ``anycell network demo|router|exchange|cell|keygen``, ``post``, ``market`` and ``verify``.

The network package (:mod:`anycell.network`) knows nothing of the agent; here
the agent's runners are plugged into the cell nodes as builders: the agent's
executive with its dry-run runner (every step through the executor, the
journal and PackML), next to the network's own plan-walking builder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List

from anycell.cli.main import EXIT_FAILED, EXIT_INPUT, EXIT_OK, command

log = logging.getLogger("anycell")

DEFAULT_CELL = "cell_configs/demo_cell.yaml"
DEFAULT_JOBS = ["examples/jobs/demo_widget.yaml", "examples/jobs/stack_assembly.yaml"]


# ------------------------------------------------------------------ shared arguments
def _session_args(p: argparse.ArgumentParser, *, listen: bool = False) -> None:
    g = p.add_argument_group("network")
    g.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                   help="Zenoh endpoint to connect to (a router or the exchange), e.g. tcp/10.0.0.5:7447; repeatable")
    g.add_argument("--listen", action="append", default=[], metavar="ENDPOINT",
                   help="Zenoh endpoint to listen on" + (" (default tcp/127.0.0.1:7447)" if listen else ""))
    g.add_argument("--mode", choices=["peer", "client", "router"], default="peer", help="Zenoh mode (default peer)")
    g.add_argument("--multicast", action="store_true", help="find peers on the LAN by multicast scouting")
    g.add_argument("--namespace", default="anycell", help="key expression prefix of this market (default anycell)")
    g.add_argument("--keys", default="keys", metavar="DIR",
                   help="keys directory: this participant's private key and everyone's public keys (default keys)")
    _tls_args(g)


def _tls_args(g: Any) -> None:
    g.add_argument("--tls-root-ca", metavar="PEM", help="CA certificate that signs the nodes' certificates")
    g.add_argument("--tls-cert", metavar="PEM", help="this node's certificate (listen and connect)")
    g.add_argument("--tls-key", metavar="PEM", help="this node's private key (listen and connect)")
    g.add_argument("--mtls", action="store_true", help="mutual TLS: both ends present certificates")


def _tls(args: argparse.Namespace) -> Dict[str, Any]:
    tls: Dict[str, Any] = {}
    if args.tls_root_ca:
        tls["root_ca_certificate"] = args.tls_root_ca
    if args.tls_cert:
        tls["listen_certificate"] = tls["connect_certificate"] = args.tls_cert
    if args.tls_key:
        tls["listen_private_key"] = tls["connect_private_key"] = args.tls_key
    if args.mtls:
        tls["enable_mtls"] = True
    return tls


def _session(args: argparse.Namespace, default_listen: List[str] = ()) -> Dict[str, Any]:  # type: ignore[assignment]
    return {"mode": args.mode, "listen": args.listen or list(default_listen), "connect": args.connect,
            "multicast": args.multicast, "tls": _tls(args)}


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


# ------------------------------------------------------------------ builders from the agent
class ExecutiveBuilder:
    """Builds a won job through the agent's executive with the dry-run runner (scaled time, no hardware).

    The executor, its journal and PackML run exactly as in the cell agent;
    the unit is then reported with measurements around the nominal poses.
    """

    def __init__(self, cell: Any, time_scale: float) -> None:
        self.cell = cell
        self.time_scale = time_scale

    def build(self, job: Any, plan: Any, cancel: threading.Event, progress: Any) -> List[Any]:
        import random
        import tempfile

        from anycell.agent import packml as pm
        from anycell.agent.executor import DryRunRunner, Executor
        from anycell.agent.journal import Journal
        from anycell.errors import ExecutionError
        from anycell.network.building import inspection_uncertainty, nominal_measurements, program_digests
        from anycell.network.records import UnitBuild

        with tempfile.TemporaryDirectory(prefix="anycell-exec-") as tmp:
            journal = Journal(os.path.join(tmp, "journal.db"))
            try:
                journal.add_job(job.id, {"job": job.id, "cell": self.cell.cell.id})
                journal.set_plan(job.id, plan.to_dict())
                machine = pm.PackML(pm.IDLE)
                machine.command("start")
                machine.state_complete(pm.STARTING)
                executor = Executor(plan, DryRunRunner(self.time_scale), journal, machine, on_progress=progress)
                watch = threading.Thread(target=lambda: cancel.wait() and executor.cancel(), daemon=True)
                watch.start()
                t0 = time.time()
                result = executor.run()
                if result.outcome != "complete":
                    raise ExecutionError(f"job '{job.id}' ended {result.outcome}", hint="the cell stopped")
                t1 = time.time()
            finally:
                journal.close()
        unc = inspection_uncertainty(self.cell)
        programs = program_digests(job)
        out = []
        for unit in range(1, job.quantity + 1):
            rng = random.Random(f"{job.id}/{unit}/{self.cell.cell.id}")
            steps = [{"op": op.id, "kind": op.kind, "resource": op.resource} for op in plan.operations
                     if op.unit == unit]
            if steps:
                steps[0]["start"], steps[-1]["end"] = round(t0, 4), round(t1, 4)
            out.append(UnitBuild(unit=unit, measurements=nominal_measurements(job, unit, unc, rng),
                                 uncertainty=unc, steps=steps, programs=programs))
        return out


class SimBuilder:
    """Builds a won job on the full simulated cell (``anycell sim``'s job runner: PyBullet robots, machines over
    OPC UA and serial G-code on a pty, inspection), and reports the units from its report.

    It cannot be hurried by the demo's time scale, so it bids with its own (``bid_time_scale``, measured wall
    seconds per planned second with headroom), a little cheaper, so that it wins a job when it can meet the
    due time, and only while it has no job in hand (``max_jobs``), so the demo stays short.
    """

    bid_time_scale = 0.4
    price_factor = 0.95
    max_jobs = 1
    killable = False

    def __init__(self, cell: Any) -> None:
        self.cell = cell

    def build(self, job: Any, plan: Any, cancel: threading.Event, progress: Any) -> List[Any]:
        import tempfile

        from anycell.agent.simulation.job import run_job_in_sim
        from anycell.errors import ExecutionError
        from anycell.network.building import inspection_uncertainty, units_from_report

        with tempfile.TemporaryDirectory(prefix="anycell-netsim-") as tmp:
            report = run_job_in_sim(self.cell, job, tmp, time_limit=1.0, on_event=progress)
            if report.get("outcome") != "complete":
                raise ExecutionError(f"job '{job.id}' ended {report.get('outcome')} in the simulated cell",
                                     hint=str((report.get("error") or {}).get("message", "")))
            return units_from_report(job, report, inspection_uncertainty(self.cell), tmp)


def _builders(executive: int, full: int = 0) -> Any:
    from anycell.network.building import PlanWalkBuilder

    def factory(index: int, cell: Any, time_scale: float) -> Any:
        if index < full:
            return SimBuilder(cell)
        if index < full + executive:
            return ExecutiveBuilder(cell, time_scale)
        return PlanWalkBuilder(cell, time_scale=time_scale)

    return factory


# ------------------------------------------------------------------ anycell network ...
def _network_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="network_command", metavar="{demo,router,exchange,cell,keygen}")
    d = sub.add_parser("demo", help="an exchange and N cells on this machine; post M jobs, kill a cell, settle")
    d.add_argument("--cells", type=int, default=6, help="how many cells (default 6)")
    d.add_argument("--jobs", type=int, default=20, help="how many jobs, posted in one burst (default 20)")
    d.add_argument("--cell", default=None, help=f"cell config of every cell (default {DEFAULT_CELL})")
    d.add_argument("--job", action="append", default=[], help="job spec(s) to cycle over (default the examples)")
    d.add_argument("--full", type=int, default=1,
                   help="how many cells run the full simulated cell (PyBullet, OPC UA, G-code on a pty) (default 1)")
    d.add_argument("--executive", type=int, default=2,
                   help="how many cells build through the agent's executive (dry run); the rest walk the plan")
    d.add_argument("--due", type=float, default=60.0, help="each job's due time, seconds after the post (default 60)")
    d.add_argument("--time-scale", type=float, default=0.01, help="wall seconds per planned second (default 0.01)")
    d.add_argument("--no-kill", action="store_true", help="do not kill a cell mid-job")
    d.add_argument("--rule", choices=["lowest_price", "quickest", "weighted"], default="lowest_price")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.add_argument("--report", metavar="DIR", help="write every unit's signed as-built record under DIR")
    d.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")

    r = sub.add_parser("router", help="run a Zenoh router (to join sites); TLS/mTLS options passed through")
    _session_args(r, listen=True)

    e = sub.add_parser("exchange", help="run the exchange: escrow, calls for proposals, awards, verification")
    _session_args(e, listen=True)
    e.add_argument("--db", default="exchange.db", help="the books (SQLite, WAL) (default exchange.db)")
    e.add_argument("--name", default="exchange", help="identity name (its key is NAME.key in --keys)")
    e.add_argument("--bid-window", type=float, default=3.0, help="seconds a call for proposals stays open")
    e.add_argument("--grace", type=float, default=30.0,
                   help="seconds after a cell's promised finish before its award is forfeited (default 30)")

    c = sub.add_parser("cell", help="run a cell node: bid from the cell's quote, build won jobs, deliver records")
    c.add_argument("cell", help="cell config (YAML or JSON)")
    _session_args(c)
    c.add_argument("--name", help="identity name (default the cell id)")
    c.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per planned second")
    c.add_argument("--builder", choices=["plan", "executive"], default="executive",
                   help="build through the agent's executive (dry run) or walk the plan")
    c.add_argument("--records", metavar="DIR", help="also write each signed record as DIR/record-<n>.json")
    c.add_argument("--defect", type=float, default=0.0, help=argparse.SUPPRESS)   # tests: units off by this (m)

    k = sub.add_parser("keygen", help="create an Ed25519 identity (NAME.key) and publish NAME.pub.json")
    k.add_argument("name")
    k.add_argument("--role", choices=["buyer", "cell", "exchange", "verifier"], required=True)
    k.add_argument("--keys", default="keys", metavar="DIR")


@command("network", "the manufacturing network: demo, router, exchange, cell, keygen", _network_args)
def _network(args: argparse.Namespace) -> int:
    which = getattr(args, "network_command", None)
    if which is None:
        print("usage: anycell network {demo,router,exchange,cell,keygen} ... (see --help)", file=sys.stderr)
        return EXIT_INPUT
    return {"demo": _demo, "router": _router, "exchange": _exchange, "cell": _cell, "keygen": _keygen}[which](args)


class _StdoutForResults:
    """Keep the real stdout for the results and send fd 1 to stderr meanwhile: pybullet (and any C library)
    prints banners on fd 1 from deep inside the planners, which would corrupt ``--json`` output."""

    def __enter__(self) -> Any:
        sys.stdout.flush()
        self._saved = os.dup(1)
        os.dup2(2, 1)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.stdout.flush()
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(self._saved, 1)
        os.close(self._saved)


def _demo(args: argparse.Namespace) -> int:
    with _StdoutForResults():
        out = _run_demo(args)
    return _print_demo(args, out)


def _run_demo(args: argparse.Namespace) -> Dict[str, Any]:
    from anycell.network.demo import run_demo
    from anycell.resources import data_path

    for chatty in ("anycell.agent", "anycell.network"):    # dozens of cells' PackML and fault logs drown the outcome
        logging.getLogger(chatty).setLevel(max(logging.getLogger(chatty).getEffectiveLevel(), logging.ERROR))
    cell = args.cell or data_path(DEFAULT_CELL) or DEFAULT_CELL
    jobs = args.job or [data_path(j) or j for j in DEFAULT_JOBS]
    if args.full >= args.cells:
        from anycell.errors import ConfigError

        raise ConfigError("the full simulated cells must leave at least one fast cell", field="full",
                          hint=f"--full {max(0, args.cells - 1)} or fewer")
    return run_demo(cell, jobs, cells=args.cells, jobs=args.jobs,
                    builder_factory=_builders(args.executive, args.full), kill=not args.no_kill, due_in=args.due,
                    report_dir=args.report, time_scale=args.time_scale, timeout=args.timeout, rule={"rule": args.rule},
                    bid_window=5.0)


def _print_demo(args: argparse.Namespace, out: Dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"{out['posted']} jobs posted to {out['cells']} cells; killed {out['killed_cell'] or 'none'} mid-job")
        print(f"  awarded {out['awarded']}, re-awarded {out['reawarded']}, built {out['completed']}, "
              f"verified {out['verified']}")
        print(f"  released {out['released']}, refunded {out['refunded']}, lost {out['lost']}, "
              f"double-awarded {out['double_awarded']}; the ledger sums to {out['ledger_sum_cents']} cents")
        print(f"  post -> award p50 {out['post_to_award_p50_s']:.3f} s, p99 {out['post_to_award_p99_s']:.3f} s; "
              f"{out['throughput_jobs_per_min']:.1f} jobs/min; bids p50 {out['bid_p50_ms']:.2f} ms, "
              f"p99 {out['bid_p99_ms']:.1f} ms")
        print(f"  {out['records']} signed records, chains verified: {out['chains_verified']}")
        if args.report:
            print(f"  records written under {out['report']}")
    sys.stdout.flush()
    ok = out["lost"] == 0 and out["double_awarded"] == 0 and out["not_settled"] == 0
    return EXIT_OK if ok else EXIT_FAILED


def _router(args: argparse.Namespace) -> int:
    from anycell.network.transport import open_session

    opts = _session(args, ["tcp/127.0.0.1:7447"])
    opts["mode"] = "router"
    session = open_session(**opts)
    print(f"Zenoh router listening on {', '.join(opts['listen'])} (zid {session.zid()}); Ctrl-C stops it",
          flush=True)
    try:
        _wait_for_signal()
    finally:
        session.close()
    return EXIT_OK


def _exchange(args: argparse.Namespace) -> int:
    from anycell.network.exchange_node import ExchangeNode
    from anycell.network.identity import Identity, Keyring
    from anycell.network.transport import Keys

    ident = Identity.load_or_create(args.keys, args.name, "exchange")
    node = ExchangeNode(ident, args.db, Keyring(args.keys), session=_session(args, ["tcp/127.0.0.1:7447"]),
                        keys=Keys(args.namespace), bid_window=args.bid_window, grace=args.grace).start()
    print(f"exchange {ident.name} ready (key {ident.key_id}, books {os.path.abspath(args.db)})", flush=True)
    try:
        _wait_for_signal()
    finally:
        node.stop()
    return EXIT_OK


def _cell(args: argparse.Namespace) -> int:
    from anycell.cell import load_cell
    from anycell.network.building import PlanWalkBuilder
    from anycell.network.cell_node import CellNode
    from anycell.network.identity import Identity, Keyring
    from anycell.network.transport import Keys

    cell = load_cell(args.cell)
    name = args.name or cell.cell.id
    ident = Identity.load_or_create(args.keys, name, "cell")
    builder = ExecutiveBuilder(cell, args.time_scale) if args.builder == "executive" and not args.defect \
        else PlanWalkBuilder(cell, time_scale=args.time_scale, defect=args.defect)
    written = [0]

    def keep(_cell: str, _contract: str, env: Any) -> None:
        written[0] += 1
        os.makedirs(args.records, exist_ok=True)
        with open(os.path.join(args.records, f"record-{written[0]:04d}.json"), "w", encoding="utf-8") as handle:
            json.dump(env, handle, indent=1, sort_keys=True)

    node = CellNode(ident, cell, builder, Keyring(args.keys), session=_session(args), keys=Keys(args.namespace),
                    time_scale=args.time_scale, chain_path=os.path.join(args.keys, f"{name}.chain.json"),
                    on_record=keep if args.records else None).start()
    print(f"cell {name} ready (key {ident.key_id}, config {node.cache.config_digest[:19]}...)", flush=True)
    try:
        _wait_for_signal()
    finally:
        node.stop()
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from anycell.network.identity import Identity

    ident = Identity.load_or_create(args.keys, args.name, args.role)
    print(f"{args.role} {args.name}: key {ident.key_id} in {os.path.abspath(args.keys)} "
          f"(share {args.name}.pub.json; keep {args.name}.key private)")
    return EXIT_OK


# ------------------------------------------------------------------ anycell post
def _post_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job spec (YAML or JSON)")
    p.add_argument("--budget", type=float, required=True, help="most the buyer will pay (held in escrow)")
    p.add_argument("--due", type=float, required=True, help="seconds from now by which the job must be built")
    p.add_argument("--rule", choices=["lowest_price", "quickest", "weighted"], default="lowest_price")
    p.add_argument("--on-fail", choices=["rebuild", "refund"], default="rebuild",
                   help="a unit that fails verification: another cell rebuilds it, or the buyer is refunded")
    p.add_argument("--bond", type=float, default=0.0,
                   help="bid bond the awarded cell puts up (returned with its pay, forfeited to the buyer if it "
                        "loses the job)")
    p.add_argument("--name", default="buyer", help="buyer identity name (default buyer)")
    p.add_argument("--wait", action="store_true", help="follow the job until it is released or refunded")
    p.add_argument("--json", action="store_true")
    _session_args(p)


@command("post", "post a job to the network's exchange with a budget (escrow) and a due time", _post_args)
def _post(args: argparse.Namespace) -> int:
    from anycell.network.buyer import Buyer, portable_spec
    from anycell.network.identity import Identity, Keyring
    from anycell.network.transport import Keys

    spec = portable_spec(args.job)
    ident = Identity.load_or_create(args.keys, args.name, "buyer")
    buyer = Buyer(ident, Keyring(args.keys), session=_session(args), keys=Keys(args.namespace)).start()
    try:
        time.sleep(0.3)   # let the subscription to the events reach the exchange before the post
        from anycell.network.ledger import cents

        rule = {"rule": args.rule, "on_fail": args.on_fail, "bond": cents(args.bond)}
        cid = buyer.post(spec, budget=args.budget, due_in=args.due, rule=rule)
        out: Dict[str, Any] = {"contract": cid, "job": spec.get("id")}
        if args.wait:
            out["state"] = buyer.wait([cid], timeout=args.due + 60)[cid]
            out["events"] = [e for e in buyer.events if e["contract"] == cid]
    finally:
        buyer.close()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"posted {out['job']} as contract {cid}" + (f": {out['state']}" if args.wait else ""))
    return EXIT_OK if not args.wait or out["state"] == "released" else EXIT_FAILED


# ------------------------------------------------------------------ anycell market
def _market_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="print the exchange's summary and exit")
    p.add_argument("--name", default="observer", help="identity name used to sign nothing but to be known")
    _session_args(p)


@command("market", "watch the network: calls, bids, awards, builds, settlements, as they happen", _market_args)
def _market(args: argparse.Namespace) -> int:
    from anycell.network.identity import Keyring, MessageGuard, Refused
    from anycell.network.transport import Keys, open_session

    keys = Keys(args.namespace)
    guard = MessageGuard(Keyring(args.keys))
    session = open_session(**_session(args))
    try:
        if args.once:
            for reply in session.get(keys.query_ctl(), timeout=3.0):
                if reply.ok is not None:
                    print(json.dumps(guard.check(reply.ok.payload.to_bytes(), "state")["body"], indent=2))
                    return EXIT_OK
            print("error: no exchange answered", file=sys.stderr)
            return EXIT_FAILED

        def on_event(sample: Any) -> None:
            try:
                body = guard.check(sample.payload.to_bytes(), "event")["body"]
            except Refused:
                return
            data = body["data"]
            detail = ", ".join(f"{k}={v}" for k, v in sorted(data.items()) if k not in ("rejected",))
            print(f"{time.strftime('%H:%M:%S')} {body['kind']:<10} {body['contract']}  {detail}", flush=True)

        def on_progress(sample: Any) -> None:
            info = json.loads(sample.payload.to_bytes())
            if info.get("event") != "step":
                print(f"{time.strftime('%H:%M:%S')} {'cell':<10} {info.get('cell')}: {info.get('event')} "
                      f"{info.get('contract', '')}", flush=True)

        subs = [session.declare_subscriber(keys.events(), on_event),
                session.declare_subscriber(keys.progress("*"), on_progress)]
        print("watching the market (Ctrl-C stops)", flush=True)
        _wait_for_signal()
        del subs
    finally:
        session.close()
    return EXIT_OK


# ------------------------------------------------------------------ anycell verify
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("record", nargs="+", help="as-built record file(s), or a directory of a cell's records (a chain)")
    p.add_argument("--keys", metavar="DIR", help="trusted public keys (*.pub.json); without it the key is not trusted")
    p.add_argument("--job", metavar="SPEC", help="the job spec the record must be for")
    p.add_argument("--json", action="store_true")


@command("verify", "check as-built records offline: signature, chain, spec digest, every measurement", _verify_args)
def _verify(args: argparse.Namespace) -> int:
    from anycell.errors import ConfigError
    from anycell.network.buyer import portable_spec
    from anycell.network.identity import Keyring
    from anycell.network.records import verify_chain, verify_record

    keyring = Keyring(args.keys) if args.keys else None
    spec = portable_spec(args.job) if args.job else None
    results: List[Dict[str, Any]] = []
    for path in args.record:
        if os.path.isdir(path):
            files = []
            for root, _dirs, names in os.walk(path):
                files += [os.path.join(root, n) for n in names if "record" in n and n.endswith(".json")]
            groups: Dict[str, List[str]] = {}
            for f in sorted(files):
                groups.setdefault(os.path.dirname(f), []).append(f)
            for _folder, chain in sorted(groups.items()):
                verdicts = verify_chain([_load(f) for f in chain], keyring=keyring)
                results += [{"file": f, **v.to_dict()} for f, v in zip(chain, verdicts)]
        else:
            if not os.path.exists(path):
                raise ConfigError(f"no such record: {path}", field="record")
            v = verify_record(_load(path), keyring=keyring, spec_data=spec)
            results.append({"file": path, **v.to_dict()})
    ok = all(r["ok"] for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "records": results}, indent=2))
    else:
        for r in results:
            print(f"{'OK  ' if r['ok'] else 'FAIL'} {r['file']}: job {r['job_id']} unit {r['unit']} by {r['cell']} "
                  f"(#{r['sequence']})")
            for c in r["checks"]:
                if not c["ok"]:
                    print(f"     {c['check']}: {c['detail']}")
        print(f"{sum(r['ok'] for r in results)}/{len(results)} record(s) verified")
    return EXIT_OK if ok else EXIT_FAILED


def _load(path: str) -> Any:
    from anycell.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the record {path}: {exc}", field="record") from None
