"""One setup.py for two worlds: `pip install -e .` in a venv, and `colcon build` on ROS 2.

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

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Open agent for general-purpose manufacturing cells: plan, schedule, move robots, drive machines.",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["anycell", "anycell.*", "agent", "agent.*", "drivers", "drivers.*",
                                    "planners", "planners.*", "sim", "sim.*"]),
    include_package_data=True,
    package_data={"agent": ["fastdds_profile.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", sorted(glob.glob("launch/*.launch.py"))),
        ("share/" + PACKAGE + "/cell_configs", sorted(glob.glob("cell_configs/*.yaml"))),
        ("lib/" + PACKAGE, [os.path.join("scripts", n) for n in NODES]),
    ],
    install_requires=["PyYAML", "numpy"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "anycell = anycell.cli:main",
            "anycell-cell-agent = agent.cell_agent_node:main",
            "anycell-sim-cell = agent.sim_node:main",
        ],
    },
)
