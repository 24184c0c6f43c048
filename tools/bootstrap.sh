#!/usr/bin/env bash
# Create the project venv and install the pinned requirements and anycell itself.
# Called by the Makefile only when requirements.txt or setup.py changed, so a
# second `make test` installs nothing and prints nothing.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt() {
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "anycell: installing $* with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "anycell: please install: $* (for example: sudo apt-get install $*)" >&2
    exit 1
  fi
}

if ! command -v "$PYTHON" >/dev/null; then need_apt python3; fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "anycell: Python 3.10 or newer is needed; $("$PYTHON" --version) found (set PYTHON=python3.11)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "anycell: creating $VENV" >&2
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    need_apt "python${ver}-venv" || need_apt python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi
echo "anycell: installing pinned requirements into $VENV (once)" >&2
pip_quiet() {  # pip's own warnings go to a log that is shown only when pip fails
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$VENV/pip.log" 2>&1 \
    || { cat "$VENV/pip.log" >&2; echo "anycell: pip install $* failed (log above)" >&2; exit 1; }
}
pip_quiet --upgrade pip
pip_quiet -r requirements.txt
pip_quiet --no-deps -e .
# node-opcua (tools/node_opcua, pinned by package-lock.json: the machinery_jobs simulator and the
# interop servers) and the official OPC UA companion nodesets (PackML, Machinery Jobs, ...) fetched
# once with npm into the git-ignored tools/node_opcua/nodesets/. Without npm the tests that need them
# skip with the reason.
if ! { command -v npm >/dev/null && command -v node >/dev/null; } && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "anycell: installing nodejs and npm with apt-get (node-opcua interop servers)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } \
    || echo "anycell: apt-get install nodejs npm failed (node-opcua tests will skip)" >&2
fi
if command -v npm >/dev/null && command -v node >/dev/null; then
  "$VENV/bin/python" -m anycell.sim.node_opcua || echo "anycell: npm ci in tools/node_opcua failed (node-opcua tests will skip)" >&2
  "$VENV/bin/python" -m anycell.sim.nodesets >/dev/null || echo "anycell: OPC UA nodesets not fetched (PackML tests will skip)" >&2
else
  echo "anycell: node/npm not found; node-opcua and the OPC UA companion nodesets are not installed (those tests will skip)" >&2
fi
