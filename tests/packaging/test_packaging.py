"""One setup.py serves pip and colcon: check what each world relies on."""

from __future__ import annotations

import os
import runpy
import xml.etree.ElementTree as ET
from unittest import mock

import setuptools

from tests.paths import ROOT


def _setup_kwargs() -> dict:
    captured: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with mock.patch.object(setuptools, "setup", lambda **kw: captured.update(kw)):
            runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
    return captured


def test_ament_index_marker_and_share_files() -> None:
    kw = _setup_kwargs()
    files = {dest: srcs for dest, srcs in kw["data_files"]}
    assert files["share/ament_index/resource_index/packages"] == ["resource/anycell"]
    assert os.path.exists(os.path.join(ROOT, "resource", "anycell"))
    assert "package.xml" in files["share/anycell"]
    assert "cell_configs/demo_cell.yaml" in files["share/anycell/cell_configs"]
    # the description packages the example cells name (robot and tool URDFs, their meshes) install beside them
    installed = {src for srcs in files.values() for src in srcs}
    for folder, _dirs, names in os.walk(os.path.join(ROOT, "cell_configs", "robots")):
        for name in names:
            assert os.path.relpath(os.path.join(folder, name), ROOT) in installed, name


def test_node_launchers_are_installed_where_ros2_run_looks() -> None:
    """colcon installs data files under the prefix: lib/anycell/<node> is what `ros2 run` finds."""
    kw = _setup_kwargs()
    files = {dest: srcs for dest, srcs in kw["data_files"]}
    scripts = sorted(os.listdir(os.path.join(ROOT, "scripts"))) if os.path.isdir(os.path.join(ROOT, "scripts")) else []
    assert files["lib/anycell"] == [os.path.join("scripts", s) for s in scripts]
    for name in scripts:
        path = os.path.join(ROOT, "scripts", name)
        assert os.access(path, os.X_OK), f"{path} must be executable"
        assert open(path).readline().startswith("#!"), f"{path} needs a shebang"


def test_pip_gets_the_cli_and_no_setup_cfg_breaks_it() -> None:
    kw = _setup_kwargs()
    assert "anycell = anycell.cli.main:main" in kw["entry_points"]["console_scripts"]
    cfg = os.path.join(ROOT, "setup.cfg")
    assert not os.path.exists(cfg) or "install_scripts" not in open(cfg).read()
    pkgs = set(kw["packages"])
    assert pkgs >= {"anycell", "anycell.agent", "anycell.agent.ros", "anycell.drivers", "anycell.planners",
                    "anycell.sim", "anycell.cli"}
    assert {p.split(".")[0] for p in pkgs} == {"anycell"}, "one top-level import name only"


def test_package_xml_declares_the_ros_dependencies() -> None:
    root = ET.parse(os.path.join(ROOT, "package.xml")).getroot()
    assert root.get("format") == "3" and root.findtext("name") == "anycell"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    assert {"rclpy", "std_msgs", "std_srvs", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs",
            "visualization_msgs"} <= deps
    assert root.find("export/build_type").text == "ament_python"


def test_core_packages_do_not_import_ros() -> None:
    for pkg in ("anycell", "planners", "drivers", "sim", "agent"):
        for dirpath, dirs, names in os.walk(os.path.join(ROOT, pkg)):
            dirs[:] = [d for d in dirs if d != "ros" and not os.path.islink(os.path.join(dirpath, d))]
            for name in names:
                if name.endswith(".py"):
                    text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                    assert "import rclpy" not in text and "from rclpy" not in text, os.path.join(dirpath, name)


def test_ci_runs_exactly_make_test() -> None:
    lines = [l.strip() for l in open(os.path.join(ROOT, ".ci", "run")) if l.strip() and not l.startswith("#")]
    assert lines[-1] == "make test"
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert readme.index("make demo") < 200 and "make test" in readme[:300]


def test_make_setup_is_idempotent() -> None:
    """After `make test` set the venv up, the install step is up to date: nothing runs again."""
    import shutil
    import subprocess

    if shutil.which("make") is None or not os.path.exists(os.path.join(ROOT, ".venv", ".anycell-installed")):
        import pytest

        pytest.skip("runs after `make test` created .venv")
    res = subprocess.run(["make", "-q", "venv"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, "make venv would reinstall although nothing changed"
