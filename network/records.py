"""As-built records: what a cell built, signed, hash-chained per cell, and checkable by anyone offline.

One record per unit, as an in-toto Statement (v1) inside a DSSE envelope, the
standard pair for signed supply-chain attestations: the statement's subject is
the unit (``job/<id>/unit/<n>``), its predicate (``AS_BUILT``) says what was
built from which spec, by which cell with which config, the programs each
machine acknowledged (their digests), the steps with times, the measurements
with their uncertainty and the guard-band decision, and the snapshots'
digests. The predicate carries the job spec itself, so a record is checked
with nothing else than the cell's public key.

Records are chained per cell: each names the sequence number and the digest
of the cell's previous record, so dropping, reordering or rewriting one breaks
the chain. DSSE signs the pre-authentication encoding (PAE) of the payload,
so every byte of the payload and its type is covered.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from anycell.conformance import check_unit
from anycell.documents import from_data
from anycell.errors import AnycellError, ConfigError
from anycell.geometry import Pose
from anycell.job import job_from_document

from .identity import Identity, Keyring, b64, canonical, digest, key_id, public_from_raw, sha256_hex, unb64

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
AS_BUILT = "https://anycell.dev/attestations/as-built/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
GENESIS = "sha256:" + "0" * 64


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def envelope_digest(envelope: Dict[str, Any]) -> str:
    """The digest that the next record of the chain names as ``previous``."""
    return digest(envelope)


@dataclass
class UnitBuild:
    """What a cell reports about one unit it built (the input of a record)."""

    unit: int
    measurements: List[Dict[str, Any]]          # [{part, xyz, rpy} or {part, found: False}]
    uncertainty: Dict[str, float]               # standard uncertainty {position, angle} of the station
    steps: List[Dict[str, Any]] = field(default_factory=list)       # [{op, kind, start, end}]
    programs: List[Dict[str, Any]] = field(default_factory=list)    # [{machine, program, lines, sha256}]
    snapshots: List[Dict[str, str]] = field(default_factory=list)   # [{name, sha256}]


def decide(spec_data: Dict[str, Any], unit: int, measurements: Sequence[Dict[str, Any]],
           uncertainty: Dict[str, float]) -> Dict[str, Any]:
    """The guard-band decision for one unit, as the spec's tolerances and the station's uncertainty give it.

    The same function is used by the cell (writing the record) and by the
    verifier (re-deciding from the record's numbers), so a claimed pass that
    the numbers do not support is caught.
    """
    job = job_from_document(from_data(spec_data))
    measured: Dict[str, Optional[Pose]] = {}
    for m in measurements:
        measured[str(m["part"])] = Pose(xyz=[float(v) for v in m["xyz"]], rpy=[float(v) for v in m["rpy"]]) \
            if m.get("found", True) else None
    result = check_unit(job, unit, measured, float(uncertainty["position"]), float(uncertainty["angle"]))
    return {"passed": bool(result.passed), "checks": dict(result.checks),
            "parts": [{"part": p.part, "present": p.present, "position_error": p.position_error,
                       "angle_error": p.angle_error, "position_tolerance": p.position_tolerance,
                       "angle_tolerance": p.angle_tolerance, "guard_position": p.position_uncertainty,
                       "guard_angle": p.angle_uncertainty, "passed": p.passed, "reason": p.reason}
                      for p in result.parts]}


class RecordChain:
    """A cell's chain of records: the next sequence number and the previous record's digest.

    With a ``path`` the chain head is kept in a small JSON file (written
    atomically), so a restarted cell continues its chain instead of forking it.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self.sequence = 0
        self.previous = GENESIS
        self._lock = threading.Lock()
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                head = json.load(handle)
            self.sequence, self.previous = int(head["sequence"]), str(head["previous"])

    def seal(self, ident: Identity, spec_data: Dict[str, Any], job_id: str, cell: Dict[str, Any],
             build: UnitBuild, contract: Optional[str] = None) -> Dict[str, Any]:
        """Sign the record of one unit as the next link of the chain and return its DSSE envelope."""
        with self._lock:
            decision = decide(spec_data, build.unit, build.measurements, build.uncertainty)
            predicate = {
                "spec": spec_data,
                "spec_digest": digest(spec_data),
                "job_id": job_id,
                "contract": contract,
                "unit": build.unit,
                "cell": {**cell, "key_id": ident.key_id, "public_key": b64(ident.public_raw)},
                "programs": build.programs,
                "steps": build.steps,
                "measurements": {"uncertainty": build.uncertainty, "coverage_factor": 2.0,
                                 "values": build.measurements},
                "decision": decision,
                "snapshots": build.snapshots,
                "chain": {"sequence": self.sequence + 1, "previous": self.previous},
            }
            subject_digest = sha256_hex(canonical({"job": job_id, "unit": build.unit,
                                                   "measurements": build.measurements}))
            statement = {"_type": STATEMENT_TYPE,
                         "subject": [{"name": f"job/{job_id}/unit/{build.unit}", "digest": {"sha256": subject_digest}}],
                         "predicateType": AS_BUILT, "predicate": predicate}
            payload = canonical(statement)
            envelope = {"payloadType": PAYLOAD_TYPE, "payload": b64(payload),
                        "signatures": [{"keyid": ident.key_id, "sig": b64(ident.sign(pae(PAYLOAD_TYPE, payload)))}]}
            self.sequence += 1
            self.previous = envelope_digest(envelope)
            if self.path:
                tmp = self.path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as handle:
                    json.dump({"sequence": self.sequence, "previous": self.previous}, handle)
                os.replace(tmp, self.path)
            return envelope


@dataclass
class Verdict:
    """The outcome of checking one record: every check with its result, and the statement when it parsed."""

    checks: List[Dict[str, Any]] = field(default_factory=list)
    statement: Optional[Dict[str, Any]] = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    def failures(self) -> List[str]:
        return [f"{c['check']}: {c['detail']}" for c in self.checks if not c["ok"]]

    def to_dict(self) -> Dict[str, Any]:
        pred = (self.statement or {}).get("predicate", {})
        return {"ok": self.ok, "checks": self.checks, "job_id": pred.get("job_id"), "unit": pred.get("unit"),
                "cell": (pred.get("cell") or {}).get("id"), "sequence": (pred.get("chain") or {}).get("sequence")}


def verify_record(envelope: Any, *, keyring: Optional[Keyring] = None, spec_data: Optional[Dict[str, Any]] = None,
                  previous: Optional[str] = None, cell_key_id: Optional[str] = None) -> Verdict:
    """Check one record offline: envelope shape, signature, statement, spec digest, chain link, measurements.

    ``keyring`` (trusted keys) makes the signature a proof of who signed;
    without it the signature is checked against the key the record names and
    the verdict says the key is not trusted. ``spec_data`` (the spec the buyer
    posted) must match the record's spec; ``previous`` is the digest of the
    cell's previous record when the chain is checked.
    """
    v = Verdict()
    if not isinstance(envelope, dict) or set(envelope) != {"payloadType", "payload", "signatures"} \
            or envelope.get("payloadType") != PAYLOAD_TYPE or not isinstance(envelope.get("signatures"), list) \
            or len(envelope["signatures"]) != 1 or not isinstance(envelope["signatures"][0], dict):
        v.add("envelope", False, "not a DSSE envelope with one signature and payloadType " + PAYLOAD_TYPE)
        return v
    v.add("envelope", True, "DSSE, one signature")
    try:
        payload = unb64(str(envelope["payload"]), "payload")
        sig = unb64(str(envelope["signatures"][0].get("sig", "")), "sig")
        statement = json.loads(payload)
        pred = statement["predicate"]
        cell = pred["cell"]
        raw_key = unb64(str(cell["public_key"]), "public_key")
    except (ConfigError, ValueError, KeyError, TypeError) as exc:
        v.add("statement", False, f"unreadable: {exc}")
        return v
    v.statement = statement
    # --- who signed
    kid = key_id(raw_key)
    signer = envelope["signatures"][0].get("keyid")
    if not v.add("key", kid == signer == cell.get("key_id") and (cell_key_id is None or kid == cell_key_id),
                 f"record key {kid}, envelope keyid {signer}, cell key_id {cell.get('key_id')}"):
        return v
    if keyring is not None:
        found = keyring.get(kid)
        v.add("trusted", found is not None and found[0]["name"] == cell.get("id"),
              f"key {kid} is {'trusted as ' + found[0]['name'] if found else 'not in the trusted keys'}")
    try:
        public_from_raw(raw_key).verify(sig, pae(PAYLOAD_TYPE, payload))
        v.add("signature", True, f"Ed25519 by {cell.get('id')} ({kid})")
    except Exception:  # noqa: BLE001 - any failure to verify is a bad signature
        v.add("signature", False, "the signature does not match the payload")
        return v
    # --- what it says
    v.add("statement", statement.get("_type") == STATEMENT_TYPE and statement.get("predicateType") == AS_BUILT,
          "in-toto Statement v1, as-built predicate")
    spec = pred.get("spec")
    v.add("spec_digest", isinstance(spec, dict) and digest(spec) == pred.get("spec_digest"),
          f"the embedded spec hashes to {pred.get('spec_digest')}")
    if spec_data is not None:
        v.add("spec_matches", digest(spec_data) == pred.get("spec_digest"), "the record is for the posted spec")
    subj = statement.get("subject") or [{}]
    want = sha256_hex(canonical({"job": pred.get("job_id"), "unit": pred.get("unit"),
                                 "measurements": (pred.get("measurements") or {}).get("values")}))
    v.add("subject", subj[0].get("digest", {}).get("sha256") == want
          and subj[0].get("name") == f"job/{pred.get('job_id')}/unit/{pred.get('unit')}", "subject names this unit")
    chain = pred.get("chain") or {}
    if previous is not None:
        v.add("chain", chain.get("previous") == previous,
              f"sequence {chain.get('sequence')} links to {str(chain.get('previous'))[:19]}...")
    # --- the measurements, re-decided from the numbers against the spec
    try:
        m = pred["measurements"]
        redo = decide(spec, int(pred["unit"]), m["values"], m["uncertainty"])
    except (AnycellError, KeyError, TypeError, ValueError) as exc:
        v.add("measurements", False, f"cannot re-decide the unit: {exc}")
        return v
    v.add("decision", redo == pred.get("decision"), "the recorded decision is what the numbers give")
    for part in redo["parts"]:
        v.add(f"tolerance:{part['part']}", part["passed"],
              part["reason"] or f"off by {1000 * (part['position_error'] or 0):.3f} mm "
                                f"+ {1000 * part['guard_position']:.3f} mm guard band "
                                f"<= {1000 * part['position_tolerance']:.3f} mm")
    return v


def verify_chain(envelopes: Sequence[Dict[str, Any]], *, keyring: Optional[Keyring] = None) -> List[Verdict]:
    """Check a cell's records in order: each one alone, and each linking to the one before (from genesis)."""
    verdicts: List[Verdict] = []
    previous = GENESIS
    kid: Optional[str] = None
    for i, env in enumerate(envelopes):
        v = verify_record(env, keyring=keyring, previous=previous, cell_key_id=kid)
        if v.statement is not None:
            seq = (v.statement["predicate"].get("chain") or {}).get("sequence")
            v.add("sequence", seq == i + 1, f"sequence {seq}, expected {i + 1}")
            kid = kid or v.statement["predicate"]["cell"].get("key_id")
        verdicts.append(v)
        previous = envelope_digest(env)
    return verdicts
