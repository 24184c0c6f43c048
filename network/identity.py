"""Who is speaking: Ed25519 identities, signed market messages, and the guard that checks them.

Every participant (buyer, cell, exchange, verifier) holds one Ed25519 key.
Its public half is shared as a small JSON file (``<name>.pub.json``) in a keys
directory that every participant trusts; a key not in that directory is
unknown and its messages are refused. Every market message is an envelope
``{kind, body, signer, ts, nonce, sig}`` signed over the canonical JSON of
everything but ``sig``; the :class:`MessageGuard` refuses (and counts) a bad
signature, an unknown key, a replayed nonce and a timestamp too far from now.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from anycell.errors import ConfigError

log = logging.getLogger(__name__)

#: A message older (or newer) than this many seconds is refused as stale.
DEFAULT_MAX_AGE = 30.0


def canonical(data: Any) -> bytes:
    """The one byte form of a JSON value that is signed and hashed (sorted keys, no spaces, UTF-8)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(data: Any) -> str:
    """``sha256:<hex>`` of a JSON value's canonical form (spec and config digests)."""
    return "sha256:" + sha256_hex(canonical(data))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{what} is not valid base64: {exc}", field=what) from None


def key_id(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its raw public bytes."""
    return sha256_hex(public_raw)[:16]


def public_from_raw(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"not an Ed25519 public key: {exc}", field="public_key") from None


@dataclass
class Identity:
    """A participant's name, role and Ed25519 key pair."""

    name: str
    role: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str, role: str) -> "Identity":
        return cls(name, role, Ed25519PrivateKey.generate())

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def public_info(self) -> Dict[str, str]:
        """What others need to check this participant's signatures (the ``.pub.json`` file)."""
        return {"name": self.name, "role": self.role, "key_id": self.key_id, "public_key": b64(self.public_raw)}

    # -------------------------------------------------------------- files
    def save(self, directory: str) -> Tuple[str, str]:
        """Write ``<name>.key`` (PEM, mode 0600) and ``<name>.pub.json``; return both paths."""
        os.makedirs(directory, exist_ok=True)
        key_path = os.path.join(directory, f"{self.name}.key")
        pem = self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        pub_path = os.path.join(directory, f"{self.name}.pub.json")
        tmp = pub_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({**self.public_info(), "role": self.role}, handle, indent=2)
        os.replace(tmp, pub_path)
        return key_path, pub_path

    @classmethod
    def load(cls, directory: str, name: str, role: str) -> "Identity":
        path = os.path.join(directory, f"{name}.key")
        try:
            with open(path, "rb") as handle:
                key = serialization.load_pem_private_key(handle.read(), password=None)
        except OSError as exc:
            raise ConfigError(f"cannot read the key {path}: {exc.strerror}", field="key",
                              hint="create one with: anycell network keygen NAME --keys DIR") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 private key", field="key")
        return cls(name, role, key)

    @classmethod
    def load_or_create(cls, directory: str, name: str, role: str) -> "Identity":
        """The participant's key from ``directory``, created (and its public half published) on first use."""
        if os.path.exists(os.path.join(directory, f"{name}.key")):
            ident = cls.load(directory, name, role)
        else:
            ident = cls.generate(name, role)
        ident.save(directory)
        return ident


class Keyring:
    """The public keys this participant trusts: added in code, or read from a keys directory.

    A key id not found is looked up again in the directory (a participant
    that joined later published its key there) when the directory changed,
    or at most once per second otherwise.
    """

    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = directory
        self._keys: Dict[str, Tuple[Dict[str, str], Ed25519PublicKey]] = {}
        self._lock = threading.Lock()
        self._last_scan = 0.0
        self._dir_stamp: Optional[int] = None
        if directory:
            self.rescan()

    def add(self, info: Dict[str, str]) -> None:
        raw = unb64(info["public_key"], "public_key")
        kid = key_id(raw)
        with self._lock:
            self._keys[kid] = (dict(info, key_id=kid), public_from_raw(raw))

    def add_identity(self, ident: Identity) -> None:
        self.add(ident.public_info())

    def _stamp(self) -> Optional[int]:
        try:
            return os.stat(self.directory).st_mtime_ns if self.directory else None
        except OSError:
            return None

    def rescan(self) -> None:
        self._last_scan = time.monotonic()
        self._dir_stamp = self._stamp()
        if not self.directory or not os.path.isdir(self.directory):
            return
        for name in sorted(os.listdir(self.directory)):
            if name.endswith(".pub.json"):
                try:
                    with open(os.path.join(self.directory, name), encoding="utf-8") as handle:
                        self.add(json.load(handle))
                except (OSError, ValueError, KeyError, ConfigError) as exc:
                    log.warning("skipping key file %s: %s", name, exc)

    def get(self, kid: str) -> Optional[Tuple[Dict[str, str], Ed25519PublicKey]]:
        with self._lock:
            found = self._keys.get(kid)
        if found is None and self.directory and (time.monotonic() - self._last_scan > 1.0
                                                 or self._stamp() != self._dir_stamp):
            self.rescan()
            with self._lock:
                found = self._keys.get(kid)
        return found

    def name_of(self, kid: str) -> Optional[str]:
        found = self.get(kid)
        return found[0]["name"] if found else None


def sign_message(ident: Identity, kind: str, body: Dict[str, Any], *, now: Optional[float] = None) -> Dict[str, Any]:
    """A signed market message: ``kind`` and ``body`` with the signer, a timestamp and a fresh nonce."""
    msg = {"kind": kind, "body": body, "signer": ident.key_id, "ts": round(time.time() if now is None else now, 6),
           "nonce": secrets.token_hex(12)}
    msg["sig"] = b64(ident.sign(canonical(msg)))
    return msg


def encode(msg: Dict[str, Any]) -> bytes:
    return canonical(msg)


class Refused(Exception):
    """A message the guard refused; ``reason`` is one of the counters' names."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class MessageGuard:
    """Checks incoming messages: well formed, known key, good signature, fresh, not seen before.

    Refusals are counted by reason (``malformed``, ``unknown_key``,
    ``bad_signature``, ``stale``, ``replay``, ``wrong_kind``) so an operator can
    see an attack or a clock problem at a glance.
    """

    keyring: Keyring
    max_age: float = DEFAULT_MAX_AGE
    refused: Dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    _seen: Dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, data: Any, kind: Optional[str] = None, *, now: Optional[float] = None) -> Dict[str, Any]:
        """The message, decoded and checked; raises :class:`Refused` (and counts it) otherwise."""
        try:
            return self._check(data, kind, time.time() if now is None else now)
        except Refused as exc:
            with self._lock:
                self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
            log.warning("refused a message: %s", exc)
            raise

    def _check(self, data: Any, kind: Optional[str], now: float) -> Dict[str, Any]:
        if isinstance(data, (bytes, bytearray, str)):
            try:
                msg = json.loads(data)
            except ValueError as exc:
                raise Refused("malformed", f"not JSON: {exc}") from None
        else:
            msg = dict(data) if isinstance(data, dict) else data
        if not isinstance(msg, dict) or set(msg) != {"kind", "body", "signer", "ts", "nonce", "sig"}:
            raise Refused("malformed", "a message has exactly kind, body, signer, ts, nonce and sig")
        if not isinstance(msg["ts"], (int, float)) or not isinstance(msg["nonce"], str) \
                or not isinstance(msg["body"], dict) or not isinstance(msg["signer"], str):
            raise Refused("malformed", "wrong field types")
        found = self.keyring.get(msg["signer"])
        if found is None:
            raise Refused("unknown_key", f"key {msg['signer']!r} is not in the keyring")
        unsigned = {k: v for k, v in msg.items() if k != "sig"}
        try:
            found[1].verify(unb64(str(msg["sig"]), "sig"), canonical(unsigned))
        except (InvalidSignature, ConfigError):
            raise Refused("bad_signature", f"{msg['kind']} from {found[0]['name']}") from None
        if kind is not None and msg["kind"] != kind:
            raise Refused("wrong_kind", f"expected {kind}, got {msg['kind']}")
        if abs(now - float(msg["ts"])) > self.max_age:
            raise Refused("stale", f"timestamp {now - float(msg['ts']):.1f} s from now (max {self.max_age:.0f} s)")
        with self._lock:
            nonce = f"{msg['signer']}/{msg['nonce']}"
            if nonce in self._seen:
                raise Refused("replay", f"nonce {msg['nonce']} from {found[0]['name']} seen before")
            self._seen[nonce] = float(msg["ts"])
            if len(self._seen) > 50000:   # forget what is too old to pass the staleness check anyway
                cutoff = now - 2 * self.max_age
                self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
            self.accepted += 1
        msg["signer_name"] = found[0]["name"]
        msg["signer_role"] = found[0].get("role", "")
        return msg
