"""One setup.py for two worlds: `pip install -e .` in a venv, and `colcon build` on ROS 2.

Everything installs as ONE import package, ``anycell``. The repository keeps the
folders the project was asked for at its root (agent/, drivers/, planners/,
sim/); ``anycell/agent`` and its siblings are relative symlinks to them, so the
same tree imports as ``anycell.agent`` in every install mode: a wheel or
``pip install .`` (build_py copies through the links), ``pip install -e .``,
``colcon build`` and ``colcon build --symlink-install`` (setuptools' legacy
``develop`` puts the source root on sys.path, where the links resolve). A
``package_dir`` mapping would not survive the legacy ``develop`` that colcon
runs on Humble.

pip puts the console scripts on PATH (venv/bin). colcon's ament_python build
runs the same file; `ros2 run anycell <node>` looks for executables in
`<prefix>/lib/anycell`, so the node launchers in scripts/ are also installed
there as data files. No setup.cfg sets install_scripts, because that breaks
pip installs.
"""

import glob
import os

from setuptools import find_packages, setup

PACKAGE = "anycell"
NODES = sorted(os.path.basename(p) for p in glob.glob("scripts/*"))


def _tree(src):
    """data_files entries for every file below ``src`` (the robot and tool description packages the example
    cells name), each under share/anycell/<its folder>."""
    out = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        if files:
            out.append(("share/" + PACKAGE + "/" + folder.replace(os.sep, "/"),
                        [os.path.join(folder, f) for f in sorted(files)]))
    return out

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Open agent for general-purpose manufacturing cells: plan, schedule, move robots, drive machines.",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["anycell", "anycell.*"]),
    include_package_data=True,
    package_data={"anycell.agent.supervision": ["fastdds_profile.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", sorted(glob.glob("launch/*.launch.py"))),
        ("share/" + PACKAGE + "/config", sorted(glob.glob("launch/*.yaml"))),
        ("share/" + PACKAGE + "/cell_configs", sorted(glob.glob("cell_configs/*.yaml"))),
        *_tree("cell_configs/robots"),
        ("share/" + PACKAGE + "/examples/jobs", sorted(glob.glob("examples/jobs/*.yaml"))),
        ("share/" + PACKAGE + "/examples/jobs/programs", sorted(glob.glob("examples/jobs/programs/*"))),
        ("lib/" + PACKAGE, [os.path.join("scripts", n) for n in NODES]),
    ],
    install_requires=["PyYAML", "numpy"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "anycell = anycell.cli.main:main",
            "anycell-cell-agent = anycell.agent.ros.cell_agent_node:main",
            "anycell-sim-cell = anycell.agent.ros.sim_node:main",
        ],
    },
)
