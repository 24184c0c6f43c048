"""As-built records: signed, chained, re-decided from their numbers; tampering with any byte is detected."""

from __future__ import annotations

import base64
import copy
import json
import os
import random
from typing import Any, Iterator, List, Tuple

import pytest

from anycell.network.buyer import portable_spec
from anycell.network.building import inspection_uncertainty, nominal_measurements
from anycell.network.identity import Identity, Keyring, canonical
from anycell.network.records import GENESIS, RecordChain, UnitBuild, verify_chain, verify_record
from anycell.cell import load_cell
from tests.paths import ROOT

JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")
CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")


@pytest.fixture(scope="module")
def spec():
    return portable_spec(JOB)


@pytest.fixture()
def cell_key(tmp_path):
    return Identity.load_or_create(str(tmp_path), "cell-a", "cell"), Keyring(str(tmp_path))


def _unit(spec, unit: int, offset: float = 0.0) -> UnitBuild:
    from anycell.documents import from_data
    from anycell.job import job_from_document

    job = job_from_document(from_data(spec))
    unc = inspection_uncertainty(load_cell(CELL))
    return UnitBuild(unit=unit, measurements=nominal_measurements(job, unit, unc, random.Random(unit), offset),
                     uncertainty=unc, steps=[{"op": f"u{unit}.inspect", "kind": "inspect", "start": 1.0, "end": 2.0}],
                     programs=[{"part": "cap", "lines": 3, "sha256": "ab" * 32}],
                     snapshots=[{"name": "end.png", "sha256": "cd" * 32}])


def _records(ident, spec, n: int = 3) -> List[dict]:
    chain = RecordChain()
    return [chain.seal(ident, spec, spec["id"], {"id": ident.name, "config_digest": "sha256:" + "1" * 64},
                       _unit(spec, u), contract="c1") for u in range(1, n + 1)]


def test_a_record_verifies_offline_with_every_check(spec, cell_key) -> None:
    ident, ring = cell_key
    env = _records(ident, spec, 1)[0]
    v = verify_record(env, keyring=ring, spec_data=spec, previous=GENESIS)
    assert v.ok, v.failures()
    names = {c["check"] for c in v.checks}
    assert {"signature", "trusted", "spec_digest", "spec_matches", "chain", "decision", "tolerance:cap"} <= names
    stmt = v.statement
    assert stmt["_type"] == "https://in-toto.io/Statement/v1" and stmt["subject"][0]["name"] == "job/demo_widget/unit/1"
    assert env["payloadType"] == "application/vnd.in-toto+json"


def _leaves(data: Any, path: Tuple = ()) -> Iterator[Tuple]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return "x"
    return str(value) + "x"


def test_tampering_with_any_field_of_the_statement_is_detected(spec, cell_key) -> None:
    """Every leaf of the statement, changed and re-encoded under the old signature: the record fails."""
    ident, ring = cell_key
    env = _records(ident, spec, 1)[0]
    stmt = json.loads(base64.b64decode(env["payload"]))
    paths = list(_leaves(stmt))
    assert len(paths) > 100
    for path in paths:
        bad_stmt = copy.deepcopy(stmt)
        node = bad_stmt
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = _changed(node[path[-1]])
        bad = dict(env, payload=base64.b64encode(canonical(bad_stmt)).decode())
        assert not verify_record(bad, keyring=ring).ok, path


def test_tampering_with_any_byte_of_the_record_file_is_detected(spec, cell_key) -> None:
    ident, ring = cell_key
    env = _records(ident, spec, 1)[0]
    raw = json.dumps(env).encode()
    rng = random.Random(7)
    for pos in sorted(rng.sample(range(len(raw)), 300)):
        flipped = bytearray(raw)
        flipped[pos] = flipped[pos] ^ 0x01
        try:
            bad = json.loads(bytes(flipped))
        except ValueError:
            continue    # not JSON any more: refused before any check
        assert not verify_record(bad, keyring=ring).ok, pos


@pytest.mark.parametrize("field", ["payloadType", "keyid", "sig", "extra"])
def test_tampering_with_the_envelope_is_detected(spec, cell_key, field) -> None:
    ident, ring = cell_key
    env = copy.deepcopy(_records(ident, spec, 1)[0])
    if field == "payloadType":
        env["payloadType"] = "application/json"
    elif field == "extra":
        env["signatures"].append(dict(env["signatures"][0]))
    else:
        env["signatures"][0][field] = base64.b64encode(b"x" * 64).decode() if field == "sig" else "0" * 16
    assert not verify_record(env, keyring=ring).ok


def test_the_chain_detects_a_dropped_a_reordered_and_a_forked_record(spec, cell_key) -> None:
    ident, ring = cell_key
    envs = _records(ident, spec, 3)
    assert all(v.ok for v in verify_chain(envs, keyring=ring))
    assert not all(v.ok for v in verify_chain([envs[0], envs[2]], keyring=ring))
    assert not all(v.ok for v in verify_chain([envs[1], envs[0], envs[2]], keyring=ring))
    fork = RecordChain().seal(ident, spec, spec["id"], {"id": "cell-a", "config_digest": "x"}, _unit(spec, 2))
    assert not all(v.ok for v in verify_chain([envs[0], fork], keyring=ring))


def test_a_chain_head_survives_a_restart(spec, cell_key, tmp_path) -> None:
    ident, ring = cell_key
    path = str(tmp_path / "chain.json")
    first = RecordChain(path).seal(ident, spec, "j", {"id": "cell-a", "config_digest": "x"}, _unit(spec, 1))
    second = RecordChain(path).seal(ident, spec, "j", {"id": "cell-a", "config_digest": "x"}, _unit(spec, 2))
    assert all(v.ok for v in verify_chain([first, second], keyring=ring))


def test_an_out_of_tolerance_unit_fails_even_when_its_maker_claims_a_pass(spec, cell_key) -> None:
    """The verifier re-decides from the numbers: a signed record whose decision lies fails, and so does a bad unit."""
    ident, ring = cell_key
    bad_unit = RecordChain().seal(ident, spec, "j", {"id": "cell-a", "config_digest": "x"}, _unit(spec, 1, 0.01))
    v = verify_record(bad_unit, keyring=ring)
    assert not v.ok and any(c["check"].startswith("tolerance:") and not c["ok"] for c in v.checks)
    assert v.statement["predicate"]["decision"]["passed"] is False


def test_a_record_for_another_spec_or_an_untrusted_key_fails(spec, cell_key) -> None:
    ident, ring = cell_key
    env = _records(ident, spec, 1)[0]
    other = dict(spec, quantity=5)
    assert not verify_record(env, keyring=ring, spec_data=other).ok
    assert not verify_record(env, keyring=Keyring()).ok
    assert verify_record(env).ok     # no keyring: the signature is checked against the record's own key only
