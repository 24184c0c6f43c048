"""`anycell network router`: a Zenoh router process carrying the market's traffic, over mutual TLS."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from anycell.errors import ConfigError
from anycell.network.transport import free_port, open_session, session_config
from tests.paths import ROOT


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certs(directory: str, names: List[str]) -> Dict[str, Tuple[str, str]]:
    """A throw-away CA and a certificate (for localhost / 127.0.0.1) per name: {name: (cert, key)}, plus 'ca'."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anycell test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out: Dict[str, Tuple[str, str]] = {}
    ca_path = os.path.join(directory, "ca.pem")
    with open(ca_path, "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    out["ca"] = (ca_path, "")
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        paths = (os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key"))
        with open(paths[0], "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(paths[1], "wb") as handle:
            handle.write(_pem_key(key))
        out[name] = paths
    return out


def _tls(certs, name: str) -> Dict[str, object]:
    cert, key = certs[name]
    return {"root_ca_certificate": certs["ca"][0], "connect_certificate": cert, "connect_private_key": key,
            "listen_certificate": cert, "listen_private_key": key, "enable_mtls": True}


@pytest.mark.slow
def test_a_router_with_mutual_tls_carries_messages_between_two_sites(tmp_path) -> None:
    certs = _certs(str(tmp_path), ["router", "site-a", "site-b"])
    port = free_port()
    endpoint = f"tls/localhost:{port}"
    router = subprocess.Popen([sys.executable, "-m", "anycell", "network", "router", "--listen", endpoint,
                               "--tls-root-ca", certs["ca"][0], "--tls-cert", certs["router"][0], "--tls-key",
                               certs["router"][1], "--mtls"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sessions = []
    try:
        line = router.stdout.readline()
        assert "Zenoh router listening on" in line, line + router.stdout.read()
        a = open_session(mode="client", connect=[endpoint], tls=_tls(certs, "site-a"))
        b = open_session(mode="client", connect=[endpoint], tls=_tls(certs, "site-b"))
        sessions += [a, b]
        got: List[str] = []
        done = threading.Event()

        def on_sample(sample) -> None:
            got.append(sample.payload.to_string())
            done.set()

        sessions.append(b.declare_subscriber("anycell/market/events", on_sample))
        end = time.time() + 20
        while not done.is_set() and time.time() < end:      # until the subscription has reached the router
            a.put("anycell/market/events", "hello from site A")
            done.wait(0.1)
        assert got and got[0] == "hello from site A"
        # without a client certificate the router refuses the link (mutual TLS)
        with pytest.raises(ConfigError):
            open_session(mode="client", connect=[endpoint], tls={"root_ca_certificate": certs["ca"][0]})
    finally:
        for s in sessions:
            try:
                s.close() if hasattr(s, "close") else s.undeclare()
            except Exception:  # noqa: BLE001
                pass
        router.terminate()
        try:
            router.wait(timeout=15)
        except subprocess.TimeoutExpired:
            router.kill()
            router.wait()


def test_an_unknown_tls_option_is_refused_with_its_field() -> None:
    with pytest.raises(ConfigError) as exc:
        session_config(tls={"certificate": "x.pem"})
    assert exc.value.field == "tls.certificate"
