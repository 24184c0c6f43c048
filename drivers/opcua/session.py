"""Opening one OPC UA session: security, the server certificate, the user identity.

Secure sessions never depend on a None endpoint: the secure channel is opened straight away with
a trusted server certificate from the config (each in turn), and asyncua checks that the server
signs the session with that very certificate. Only when every trusted certificate is refused does
the driver ask the server for its endpoints (over None where offered) to say *which* certificate it
has, so the error carries the fingerprint to compare with the machine builder.

The user identity is anonymous, user name + password (the password from an environment variable,
never from the file), or an X.509 user certificate with its private key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from typing import Any, List, Optional

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto

from anycell.errors import ConnectionLost

from .errors import LoginRefused, NotTrusted, ServerMismatch

log = logging.getLogger(__name__)

POLICIES = {"Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
            "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
            "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
#: Status codes that mean "who you are was refused", not "try again later".
LOGIN_REFUSED = {ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected,
                 ua.StatusCodes.BadIdentityTokenInvalid, ua.StatusCodes.BadUserSignatureInvalid,
                 ua.StatusCodes.BadCertificateUntrusted}


def der(path: str) -> bytes:
    """A certificate file (DER or PEM) as DER bytes."""
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def client_uri(cert_path: str) -> str:
    """The application URI in the client certificate (servers check that they match)."""
    try:
        from cryptography import x509

        cert = await uacrypto.load_certificate(cert_path)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uris:
            return uris[0]
    except Exception:  # noqa: BLE001 - no SAN URI: keep the default
        pass
    return "urn:anycell:client"


class SessionFactory:
    """Opens sessions for one configured machine; remembers the server certificate it first met."""

    def __init__(self, machine_id: str, endpoint: str, drv: Any, timeout: float) -> None:
        self.machine_id = machine_id
        self.endpoint = endpoint
        self.timeout = timeout
        opc = getattr(drv, "kind", None) == "opcua"
        sec = drv.security if opc else None
        self.security = sec if sec is not None and sec.policy != "None" else None
        self.username: Optional[str] = drv.username if opc else None
        self.password_env: Optional[str] = drv.password_env if opc else None
        self.user_certificate = getattr(drv, "user_certificate", None) if opc else None
        self.user_private_key = getattr(drv, "user_private_key", None) if opc else None
        self.server_der: Optional[bytes] = None
        self._field = f"machines.{machine_id}.driver"

    def describe(self) -> Optional[str]:
        return f"{self.security.policy}/{self.security.mode}" if self.security else None

    async def open(self) -> Client:
        """A connected client, or a typed error: LoginRefused, NotTrusted, ServerMismatch, ConnectionLost."""
        if self.security is None:
            client = await self._client(None)
            await self._connect(client)
            return client
        candidates: List[bytes] = ([self.server_der] if self.server_der is not None
                                   else [der(str(p)) for p in self.security.trusted_server_certificates])
        if not candidates:
            raise NotTrusted(f"{self.machine_id}: no trusted server certificate configured",
                             field=f"{self._field}.security.trusted_server_certificates",
                             hint="add the machine's server certificate file (check its fingerprint first)")
        last: Optional[BaseException] = None
        for cand in candidates:
            client = await self._client(cand)
            try:
                await self._connect(client)
            except (LoginRefused, ServerMismatch):
                raise
            except (ConnectionRefusedError, socket.gaierror) as exc:
                raise ConnectionLost(f"{self.machine_id}: no answer from {self.endpoint}: {exc!r}",
                                     hint="is the server running and reachable?") from exc
            except Exception as exc:  # noqa: BLE001 - TCP is up, the channel was refused (or dropped) with it
                last = exc
                log.debug("%s: secure channel with certificate %s refused: %r", self.machine_id,
                          fingerprint(cand)[:16], exc)
                continue
            if self.server_der is None:
                self.server_der = cand
            return client
        actual = await self._probe_certificate()
        if self.server_der is not None and actual is not None and actual != self.server_der:
            raise ServerMismatch(
                f"{self.machine_id}: the server certificate at {self.endpoint} changed "
                f"(now SHA-256 {fingerprint(actual)[:16]}..., was {fingerprint(self.server_der)[:16]}...)",
                field=f"{self._field}.security.trusted_server_certificates",
                hint="if the machine builder replaced it, check the new fingerprint and trust the new file")
        if actual is not None and fingerprint(actual) not in {fingerprint(c) for c in candidates}:
            raise NotTrusted(f"{self.machine_id}: the server certificate at {self.endpoint} is not trusted "
                             f"(SHA-256 {fingerprint(actual)[:16]}...)",
                             field=f"{self._field}.security.trusted_server_certificates",
                             hint="check the fingerprint with the machine builder, then add the server "
                                  "certificate file here")
        raise NotTrusted(f"{self.machine_id}: the server at {self.endpoint} refused a {self.describe()} channel "
                         f"with every trusted certificate ({last!r})",
                         field=f"{self._field}.security",
                         hint="check security.policy/mode against the server's endpoints, that the server "
                              "trusts this client certificate, and the trusted server certificate")

    async def _client(self, server_der: Optional[bytes]) -> Client:
        client = Client(self.endpoint, timeout=self.timeout)
        sec = self.security
        if sec is not None and server_der is not None:
            client.application_uri = await client_uri(str(sec.certificate))
            await client.set_security(POLICIES[sec.policy], str(sec.certificate),  # type: ignore[type-abstract]
                                      str(sec.private_key), server_certificate=server_der, mode=MODES[sec.mode])
        if self.user_certificate is not None:
            await client.load_client_certificate(str(self.user_certificate))
            await client.load_private_key(str(self.user_private_key))  # type: ignore[arg-type]
        elif self.username:
            pw = os.environ.get(self.password_env or "", None)
            if pw is None:
                raise LoginRefused(f"{self.machine_id}: password variable '{self.password_env}' is not set",
                                   field=f"{self._field}.password_env",
                                   hint=f"export {self.password_env}=... before starting anycell")
            client.set_user(self.username)
            client.set_password(pw)
        return client

    async def _connect(self, client: Client) -> None:
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            await _quiet_disconnect(client)
            if exc.code in LOGIN_REFUSED:
                who = (f"user certificate {self.user_certificate}" if self.user_certificate
                       else f"user '{self.username}'" if self.username else "anonymous login")
                raise LoginRefused(f"{self.machine_id}: {self.endpoint} refused {who} ({exc})",
                                   field=f"{self._field}", hint="check the user name/password or the user "
                                   "certificate, and that the server allows this identity") from exc
            if exc.code in (ua.StatusCodes.BadSecurityPolicyRejected, ua.StatusCodes.BadSecurityModeRejected):
                raise NotTrusted(f"{self.machine_id}: {self.endpoint} offers no {self.describe()} endpoint ({exc})",
                                 field=f"{self._field}.security",
                                 hint="match security.policy and security.mode to the server") from exc
            raise
        except ua.UaError as exc:
            await _quiet_disconnect(client)
            if "certificate mismatch" in str(exc).lower() and self.server_der is not None:
                raise ServerMismatch(f"{self.machine_id}: the server at {self.endpoint} signs with another "
                                     "certificate than before", hint="trust the new certificate if expected") from exc
            raise
        except BaseException:
            await _quiet_disconnect(client)
            raise

    async def _probe_certificate(self) -> Optional[bytes]:
        """The server certificate from GetEndpoints over None, where the server offers it."""
        sec = self.security
        assert sec is not None
        try:
            probe = Client(self.endpoint, timeout=self.timeout)
            endpoints = await probe.connect_and_get_server_endpoints()
        except Exception:  # noqa: BLE001 - no None endpoint: nothing more to learn
            return None
        policy = POLICIES[sec.policy].URI
        for e in endpoints:
            if e.SecurityPolicyUri == policy and e.ServerCertificate:
                return bytes(e.ServerCertificate)
        return next((bytes(e.ServerCertificate) for e in endpoints if e.ServerCertificate), None)


async def _quiet_disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 1.0)
    except Exception:  # noqa: BLE001 - it is already broken
        pass


