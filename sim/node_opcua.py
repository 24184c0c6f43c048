"""The node-opcua servers in ``tools/node_opcua`` (another OPC UA stack than asyncua).

``jobs_server.js`` is the simulator for ``profile: machinery_jobs`` machines: the 2024 Machinery Jobs
and ISA-95 Job Control nodesets load in node-opcua, not in asyncua. ``packml_server.js`` and
``machine_server.js`` are interop servers for the tests and the benchmark. ``ensure_installed()``
runs ``npm ci`` there once (tools/bootstrap.sh does it at set-up).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from anycell.errors import DriverError

from .nodesets import ROOT

TOOL = os.path.join(ROOT, "tools", "node_opcua")


def installed() -> bool:
    return shutil.which("node") is not None and os.path.isdir(os.path.join(TOOL, "node_modules", "node-opcua"))


def ensure_installed() -> None:
    """node-opcua at the pinned version (package-lock.json), or DriverError with a hint."""
    if installed():
        return
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise DriverError("node and npm are needed for this simulated OPC UA machine (node-opcua)",
                          hint="install them (apt-get install nodejs npm), then run `npm ci` in tools/node_opcua")
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TOOL,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise DriverError(f"npm ci in tools/node_opcua failed: {proc.stderr.strip()[-300:]}",
                          hint="is the npm registry reachable?")


def script(name: str) -> str:
    return os.path.join(TOOL, name)


if __name__ == "__main__":
    ensure_installed()
