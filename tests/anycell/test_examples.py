"""Every shipped example loads, validates and fits its cell."""

from __future__ import annotations

import glob
import json
import os

import jsonschema
import pytest
import yaml

from anycell.cell import load_cell
from anycell.planners.feasibility import check_resources
from anycell.job import load_job
from anycell.schemas import schema_for

from tests.paths import DEMO_CELL, DEMO_JOB, KUKA_CELL, ROOT, STACK_JOB

CELLS = sorted(glob.glob(os.path.join(ROOT, "cell_configs", "*.yaml")))
JOBS = sorted(glob.glob(os.path.join(ROOT, "examples", "jobs", "*.yaml")))


@pytest.mark.parametrize("path", CELLS, ids=os.path.basename)
def test_every_cell_loads_and_matches_the_schema(path: str) -> None:
    cell = load_cell(path)
    assert cell.robots and cell.cell.id
    jsonschema.Draft202012Validator(schema_for("cell")).validate(yaml.safe_load(open(path)))


@pytest.mark.parametrize("path", JOBS, ids=os.path.basename)
def test_every_job_loads_and_matches_the_schema(path: str) -> None:
    job = load_job(path)
    assert job.parts and job.assembly.placements
    jsonschema.Draft202012Validator(schema_for("job")).validate(yaml.safe_load(open(path)))


def test_demo_cell_has_what_the_demo_needs() -> None:
    cell = load_cell(DEMO_CELL)
    assert cell.robots[0].model == "franka_panda" and cell.robots[0].tool.kind == "parallel_gripper"
    drivers = {m.id: (m.driver.kind, getattr(m.driver, "dialect", None)) for m in cell.machines}
    assert drivers == {"printer": ("serial", "marlin"), "mill": ("opcua", None)}
    kinds = {s.kind for s in cell.stations}
    assert {"feeder", "fixture", "output_tray", "inspection"} <= kinds
    assert len(cell.part_types) >= 2


def test_second_cell_uses_another_robot_and_tool() -> None:
    cell = load_cell(KUKA_CELL)
    assert cell.robots[0].model == "kuka_iiwa" and cell.robots[0].tool.kind == "suction"


def test_demo_job_needs_print_mill_and_feeder_parts() -> None:
    job = load_job(DEMO_JOB)
    assert job.quantity >= 2
    sources = {p.source.process or "feeder" for p in job.parts}
    assert sources == {"print", "mill", "feeder"}
    printed = next(p for p in job.parts if p.source.process == "print")
    assert printed.source.program.file.endswith("programs/cap.gcode")
    assert "M109" in printed.source.program.text()


@pytest.mark.parametrize("cell", [DEMO_CELL, KUKA_CELL], ids=os.path.basename)
def test_assembly_job_fits_both_cells(cell: str) -> None:
    check_resources(load_cell(cell), load_job(STACK_JOB))


def test_exported_schemas_are_current() -> None:
    for which in ("cell", "job"):
        with open(os.path.join(ROOT, "schemas", f"{which}.schema.json")) as handle:
            assert json.load(handle) == schema_for(which), f"run 'make schemas' to refresh schemas/{which}.schema.json"


def test_json_documents_load_like_yaml(tmp_path) -> None:
    data = yaml.safe_load(open(STACK_JOB))
    path = tmp_path / "job.json"
    path.write_text(json.dumps(data, indent=2))
    assert load_job(str(path)) == load_job(STACK_JOB)
