"""The official OPC UA companion nodesets (PackML, Machinery, Machinery Jobs, ...), fetched at set-up.

They come from the npm package ``node-opcua-nodesets`` (``npm pack``, XML under
``package/nodesets/``) into the git-ignored ``tools/node_opcua/nodesets/``; they are never copied
into the repository. ``python -m anycell.sim.nodesets`` fetches them (idempotent; ``make test``
does it through tools/bootstrap.sh). ``ANYCELL_NODESETS`` points at another folder of XML files.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
from typing import Optional

from anycell.errors import DriverError

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CACHE = os.path.join(ROOT, "tools", "node_opcua", "nodesets")
PACKAGE = "node-opcua-nodesets@2.182.0"
PACKML = "Opc.Ua.PackML.NodeSet2.xml"


def folder() -> str:
    return os.environ.get("ANYCELL_NODESETS") or os.path.join(CACHE, "package", "nodesets")


def find(name: str) -> Optional[str]:
    path = os.path.join(folder(), name)
    return path if os.path.isfile(path) else None


def fetch(quiet: bool = True) -> str:
    """Fetch the nodesets once (npm pack + untar); returns the folder. Raises DriverError with a hint."""
    if find(PACKML):
        return folder()
    if shutil.which("npm") is None:
        raise DriverError("the OPC UA companion nodesets are not here and npm is not installed",
                          hint="install node and npm (apt-get install npm), then: python -m anycell.sim.nodesets")
    os.makedirs(CACHE, exist_ok=True)
    proc = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=CACHE, capture_output=True, text=True,
                          timeout=300)
    tgz = sorted(glob.glob(os.path.join(CACHE, "node-opcua-nodesets-*.tgz")))
    if proc.returncode != 0 or not tgz:
        raise DriverError(f"npm pack {PACKAGE} failed: {proc.stderr.strip()[-300:]}",
                          hint="is the npm registry reachable? then: python -m anycell.sim.nodesets")
    with tarfile.open(tgz[-1]) as tar:
        tar.extractall(CACHE, filter="data")
    return folder()


def require(name: str) -> str:
    """The path of one nodeset file, fetching the package first when needed."""
    path = find(name)
    if path is None:
        fetch()
        path = find(name)
    if path is None:
        raise DriverError(f"nodeset {name} not found in {folder()}", hint="python -m anycell.sim.nodesets")
    return path


if __name__ == "__main__":
    try:
        sys.stdout.write(fetch() + "\n")
    except DriverError as exc:
        sys.stderr.write(f"anycell: {exc}\n")
        sys.exit(1)
