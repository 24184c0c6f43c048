"""Where anycell's installed data lives: the example cells, jobs and the ROS package share.

A cell can be named instead of given by path (``anycell validate demo_cell``).
The name is looked up in each *share directory*, in this order:

1. the ament index (a colcon or apt install on a ROS 2 machine), when
   ``ament_index_python`` is importable;
2. ``<sys.prefix>/share/anycell``, where pip puts the package's data files
   (a wheel or ``pip install .`` into a venv);
3. the source tree beside the ``anycell`` package, for an editable install or
   a checkout on ``PYTHONPATH``.

Nothing here imports beyond the standard library, so every layer may use it.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from anycell.errors import ConfigError

PACKAGE = "anycell"
#: The source tree's root (the folder holding setup.py), when running from a checkout.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def share_dirs() -> List[str]:
    """The existing share directories, most specific first."""
    found: List[str] = []
    try:  # a ROS 2 machine: the package's share directory from the ament index
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            found.append(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError, LookupError):  # not installed, or no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    found.append(os.path.join(sys.prefix, "share", PACKAGE))
    if os.path.isfile(os.path.join(SOURCE_ROOT, "setup.py")):
        found.append(SOURCE_ROOT)
    seen: List[str] = []
    for path in found:
        if os.path.isdir(path) and path not in seen:
            seen.append(path)
    return seen


def data_path(*parts: str) -> Optional[str]:
    """The first existing ``<share>/<parts...>`` over :func:`share_dirs`, or None."""
    for base in share_dirs():
        path = os.path.join(base, *parts)
        if os.path.exists(path):
            return path
    return None


def looks_like_name(ref: str) -> bool:
    """A bare name (``demo_cell``) rather than a path to a file."""
    return os.sep not in ref and "/" not in ref and not ref.endswith((".yaml", ".yml", ".json"))


def resolve_cell_path(cell: str, share_dir: Optional[str] = None) -> str:
    """A cell argument as an absolute file path: an existing path, or a name in ``<share>/cell_configs``."""
    if os.path.isfile(cell):
        return os.path.abspath(cell)
    bases = ([share_dir] if share_dir else []) + share_dirs()
    for base in bases:
        for name in (cell, cell + ".yaml"):
            path = os.path.join(base, "cell_configs", name)
            if os.path.isfile(path):
                return os.path.abspath(path)
    raise ConfigError(f"no cell config '{cell}'", field="cell",
                      hint="give a path to a YAML file, or the name of one in cell_configs/ (demo_cell); "
                           f"looked in: {', '.join(os.path.join(b, 'cell_configs') for b in bases) or 'nowhere'}")
