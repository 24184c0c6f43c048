"""Paths to the shipped examples, for every test package."""

from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CELL = os.path.join(ROOT, "cell_configs", "demo_cell.yaml")
KUKA_CELL = os.path.join(ROOT, "cell_configs", "kuka_cell.yaml")
DEMO_JOB = os.path.join(ROOT, "examples", "jobs", "demo_widget.yaml")
STACK_JOB = os.path.join(ROOT, "examples", "jobs", "stack_assembly.yaml")
