"""Every install mode gives the one import package ``anycell`` and finds the shipped cells.

These build and install for real (slow): a wheel into a fresh venv, ``pip
install -e .`` into a fresh venv, and ``colcon build`` with and without
``--symlink-install``. Each runs from a directory outside the source tree, so
``demo_cell`` must resolve from the installed data, not from the checkout.

The fresh venvs get the dependencies (PyYAML, numpy, rclpy, ...) without
network through ``PYTHONPATH``: a folder of links to the project venv's
site-packages, less anycell's own entries (its dist-info and the editable
install's finder module, whose name a fresh editable install shares). A
``PYTHONPATH`` entry is not a site directory, so its ``.pth`` files are not
processed either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from typing import Dict, List

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.slow

#: What a source copy leaves out (local state, build output).
SKIP = {".git", ".venv", "build", "install", "log", "reports", "__pycache__", ".mypy_cache", ".ruff_cache",
        ".pytest_cache", "node_modules"}
#: colcon for the colcon tests, pinned here (test-only): installed once into a venv beside the project's.
COLCON_PIN = "colcon-common-extensions==0.3.0"

PROBE = ("import anycell, anycell.agent.ros, anycell.sim.robot, anycell.planners.pipeline\n"
         "from anycell.resources import resolve_cell_path\n"
         "print(anycell.__file__)\n"
         "print(resolve_cell_path('demo_cell'))\n")


def _source_copy(dest: str) -> str:
    """The repository as a checkout has it (links kept), without local state."""
    shutil.copytree(ROOT, dest, symlinks=True, ignore=lambda _d, names: [n for n in names if n in SKIP
                                                                         or n.endswith(".egg-info")])
    return dest


def _env(**extra: str) -> Dict[str, str]:
    """The environment of a process that must not see this checkout (or a ROS install) by accident."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def _run(argv: List[str], *, cwd: str, env: Dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _deps_path(tmp_path) -> str:
    """The project venv's dependencies, offline: links to its site-packages entries, anycell's left out."""
    site = sysconfig.get_paths()["purelib"]
    deps = os.path.join(str(tmp_path), "deps")
    os.makedirs(deps, exist_ok=True)
    for name in os.listdir(site):
        if name.startswith(("__editable__", "anycell")) or name.endswith(".pth"):
            continue
        os.symlink(os.path.join(site, name), os.path.join(deps, name))
    return deps


def _fresh_venv(path: str) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True, timeout=120)
    return os.path.join(path, "bin", "python")


def _pip_into(python: str, *args: str, cwd: str) -> None:
    """The project venv's pip, installing into another venv's interpreter (no pip bootstrap there)."""
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
          "--disable-pip-version-check", *args], cwd=cwd, env=_env())


def test_wheel_holds_one_package_and_runs_from_a_fresh_venv(tmp_path) -> None:
    src = _source_copy(str(tmp_path / "src"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", str(dist),
          src], cwd=str(tmp_path), env=_env())
    (wheel,) = [str(p) for p in dist.iterdir() if p.name.endswith(".whl")]
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"anycell"}, sorted(tops)
    assert any(n.endswith("/share/anycell/cell_configs/demo_cell.yaml") for n in names)
    assert "anycell/agent/ros/cell_agent_node.py" in names and "anycell/sim/robot.py" in names

    venv = str(tmp_path / "venv")
    python = _fresh_venv(venv)
    _pip_into(python, "--no-index", wheel, cwd=str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(PYTHONPATH=_deps_path(tmp_path))
    res = _run([os.path.join(venv, "bin", "anycell"), "validate", "demo_cell"], cwd=str(elsewhere), env=env)
    assert res.stdout.startswith("cell demo_cell:"), res.stdout
    package, cell = _run([python, "-c", PROBE], cwd=str(elsewhere), env=env).stdout.split()
    assert package.startswith(venv + os.sep) and cell.startswith(os.path.join(venv, "share", "anycell") + os.sep)


def test_editable_install_imports_through_the_folder_links(tmp_path) -> None:
    """``pip install -e .``: the root folders import as anycell.<folder> and the cells resolve."""
    src = _source_copy(str(tmp_path / "src"))
    venv = str(tmp_path / "venv")
    python = _fresh_venv(venv)
    _pip_into(python, "-e", src, cwd=str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(PYTHONPATH=_deps_path(tmp_path))
    package, cell = _run([python, "-c", PROBE], cwd=str(elsewhere), env=env).stdout.split()
    assert package == os.path.join(src, "anycell", "__init__.py")
    assert cell.endswith(os.path.join("cell_configs", "demo_cell.yaml"))
    res = _run([os.path.join(venv, "bin", "anycell"), "validate", "demo_cell"], cwd=str(elsewhere), env=env)
    assert res.stdout.startswith("cell demo_cell:")


def _colcon() -> str:
    """colcon: from PATH, else installed once (pinned) into a venv beside the project venv; skip if impossible."""
    found = shutil.which("colcon")
    if found:
        return found
    home = os.path.join(sys.prefix, "colcon")
    exe = os.path.join(home, "bin", "colcon")
    stamp = os.path.join(home, ".pin")
    if os.path.exists(exe) and os.path.exists(stamp) and open(stamp).read() == COLCON_PIN:
        return exe
    shutil.rmtree(home, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", home], check=True, timeout=300, capture_output=True)
        subprocess.run([os.path.join(home, "bin", "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", COLCON_PIN], check=True, timeout=600, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"colcon is not installed and could not be ({COLCON_PIN}): {exc}")
    with open(stamp, "w") as handle:
        handle.write(COLCON_PIN)
    return exe


@pytest.mark.parametrize("symlink", [False, True], ids=["copy", "symlink-install"])
def test_colcon_build_installs_the_ros_package(tmp_path, symlink: bool) -> None:
    if shutil.which("bash") is None:
        pytest.skip("needs bash to source the install space")
    colcon = _colcon()
    ws = tmp_path / "ws"
    _source_copy(str(ws / "src" / "anycell"))
    _run([colcon, "build", "--base-paths", "src"] + (["--symlink-install"] if symlink else []), cwd=str(ws),
         env=_env())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # what an operator does: source the install space, then run Python from anywhere
    script = (f"source {ws}/install/setup.bash && export PYTHONPATH=$PYTHONPATH:{_deps_path(tmp_path)} && "
              f"exec {sys.executable} -c \"$PROBE\"")
    res = _run(["bash", "-c", script], cwd=str(elsewhere), env=_env(PROBE=PROBE))
    package, cell = res.stdout.split()
    assert package.startswith(str(ws) + os.sep), package
    assert cell == os.path.join(str(ws), "install", "anycell", "share", "anycell", "cell_configs", "demo_cell.yaml")
    launchers = os.listdir(ws / "install" / "anycell" / "lib" / "anycell")
    assert launchers, "ros2 run finds the node launchers in lib/anycell"
