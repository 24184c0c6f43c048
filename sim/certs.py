"""Self-signed OPC UA application certificates for tests, simulators and first setups.

``python -m sim.certs DIR NAME`` writes ``NAME.der`` (certificate) and ``NAME.pem`` (private key)
with the application URI ``urn:anycell:NAME`` and the host names/IPs in the subject alternative
names, as OPC UA Part 6 asks. Real plants use certificates from their own CA; these are for the
simulator and for trying security end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path
from typing import List, Optional, Tuple

from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID


def make_certificate(directory: str, name: str, *, server: bool = False,
                     hosts: Optional[List[str]] = None) -> Tuple[str, str]:
    """Create (or keep) ``DIR/NAME.der`` and ``DIR/NAME.pem``; return their paths."""
    os.makedirs(directory, exist_ok=True)
    cert = Path(directory) / f"{name}.der"
    key = Path(directory) / f"{name}.pem"
    use = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    host = (hosts or ["127.0.0.1"])[0]
    asyncio.run(setup_self_signed_certificate(
        key, cert, f"urn:anycell:{name}", host, use,
        {"countryName": "EU", "organizationName": "anycell", "commonName": f"anycell {name}"}))
    return str(cert), str(key)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m anycell.sim.certs", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("name", help="file stem; the application URI becomes urn:anycell:NAME")
    parser.add_argument("--server", action="store_true", help="a server certificate (else a client one)")
    parser.add_argument("--host", default=socket.gethostname())
    args = parser.parse_args(argv)
    cert, key = make_certificate(args.directory, args.name, server=args.server, hosts=[args.host])
    print(cert)
    print(key)


if __name__ == "__main__":
    main()
