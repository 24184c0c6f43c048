"""Signed market messages: every field is covered by the signature; unknown keys, replays and stale ones are refused."""

from __future__ import annotations

import copy

import pytest

from anycell.network.identity import Identity, Keyring, MessageGuard, Refused, encode, sign_message


@pytest.fixture()
def parties(tmp_path):
    cell = Identity.load_or_create(str(tmp_path), "cell-a", "cell")
    exchange = Identity.load_or_create(str(tmp_path), "exchange", "exchange")
    return cell, exchange, Keyring(str(tmp_path))


def test_a_signed_message_is_accepted_once_with_its_signer_named(parties) -> None:
    cell, _ex, ring = parties
    guard = MessageGuard(ring)
    msg = sign_message(cell, "propose", {"contract": "c1", "price": 700})
    got = guard.check(encode(msg), "propose")
    assert got["signer_name"] == "cell-a" and got["signer_role"] == "cell" and got["body"]["price"] == 700
    with pytest.raises(Refused) as exc:
        guard.check(encode(msg), "propose")
    assert exc.value.reason == "replay"
    assert guard.refused == {"replay": 1} and guard.accepted == 1


@pytest.mark.parametrize("field,value", [("kind", "award"), ("body", {"contract": "c1", "price": 1}),
                                         ("signer", "0" * 16), ("ts", 1.0), ("nonce", "00"), ("sig", "AAAA")])
def test_tampering_any_field_is_refused(parties, field, value) -> None:
    cell, _ex, ring = parties
    msg = sign_message(cell, "propose", {"contract": "c1", "price": 700})
    bad = copy.deepcopy(msg)
    bad[field] = value
    with pytest.raises(Refused) as exc:
        MessageGuard(ring).check(encode(bad))
    assert exc.value.reason in ("bad_signature", "unknown_key", "stale" if field == "ts" else "bad_signature")


def test_tampering_the_body_deep_inside_is_refused(parties) -> None:
    cell, _ex, ring = parties
    msg = sign_message(cell, "inform", {"records": [{"unit": 1, "x": [0.1, 0.2]}]})
    msg["body"]["records"][0]["x"][1] = 0.3
    with pytest.raises(Refused) as exc:
        MessageGuard(ring).check(encode(msg))
    assert exc.value.reason == "bad_signature"


def test_an_unknown_key_a_stale_message_and_junk_are_refused_and_counted(parties, tmp_path) -> None:
    cell, _ex, ring = parties
    stranger = Identity.generate("mallory", "cell")
    guard = MessageGuard(ring, max_age=30.0)
    for data in (encode(sign_message(stranger, "propose", {})),
                 encode(sign_message(cell, "propose", {}, now=1_000_000.0)),
                 b"not json", encode({"kind": "propose"})):
        with pytest.raises(Refused):
            guard.check(data)
    assert guard.refused == {"unknown_key": 1, "stale": 1, "malformed": 2}


def test_a_key_published_later_is_found_in_the_keys_directory(tmp_path) -> None:
    ring = Keyring(str(tmp_path))
    late = Identity.load_or_create(str(tmp_path), "late-cell", "cell")
    ring._last_scan = 0.0
    assert MessageGuard(ring).check(encode(sign_message(late, "propose", {})))["signer_name"] == "late-cell"


def test_the_private_key_file_is_private_and_reloads(tmp_path) -> None:
    ident = Identity.load_or_create(str(tmp_path), "buyer", "buyer")
    assert (tmp_path / "buyer.key").stat().st_mode & 0o077 == 0
    assert Identity.load_or_create(str(tmp_path), "buyer", "buyer").key_id == ident.key_id
