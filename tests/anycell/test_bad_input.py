"""Every class of bad input gets an error that names the file, line, field and a hint."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from anycell.cell import load_cell
from anycell.documents import from_data
from anycell.errors import ConfigError, InfeasibleError, UnresolvedReference
from anycell.planners.feasibility import check_resources
from anycell.job import job_from_document, load_job
from tests.paths import DEMO_CELL, DEMO_JOB, KUKA_CELL, STACK_JOB


def _edited(tmp_path, source: str, old: str, new: str, name: str | None = None) -> str:
    text = open(source, encoding="utf-8").read()
    assert old in text, f"test setup: {old!r} not in {source}"
    path = tmp_path / (name or os.path.basename(source))
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return str(path)


def _line_of(path: str, needle: str) -> int:
    for number, line in enumerate(open(path, encoding="utf-8"), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_yaml_syntax_error_reports_its_position(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "  name: Demo cell (Panda, printer, mill)", "  name: [unclosed")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert "syntax error" in str(err.value)
    assert err.value.location.file == path and err.value.location.line is not None
    assert err.value.location.line >= _line_of(path, "[unclosed")


def test_json_syntax_error_reports_its_position(tmp_path) -> None:
    path = tmp_path / "job.json"
    path.write_text('{\n  "id": "x",\n  "parts": [1, 2,,]\n}\n')
    with pytest.raises(ConfigError) as err:
        load_job(str(path))
    assert err.value.location.line == 3


def test_unknown_field_suggests_the_right_one(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "    tool:\n      kind: parallel_gripper", "    tol:\n      kind: parallel_gripper")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    msg = str(err.value)
    assert "unknown field 'tol'" in msg and "did you mean 'tool'?" in msg
    assert err.value.field == "robots[0].tol"
    assert err.value.location.line == _line_of(path, "    tol:")
    assert msg.startswith(f"{path}:{err.value.location.line}:5: robots[0].tol")


def test_missing_required_field_names_it(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_JOB, "    mass: 0.05\n", "", "job.yaml")
    shutil.copytree(os.path.join(os.path.dirname(DEMO_JOB), "programs"), tmp_path / "programs")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert "missing required field 'mass'" in str(err.value)
    assert err.value.field == "parts[0]"
    assert err.value.location.line == _line_of(path, "  - id: base")


def test_wrong_type_is_named(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "quantity: 1", "quantity: two")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "quantity" and "expected a whole number" in str(err.value)
    assert err.value.location.line == _line_of(path, "quantity: two")


def test_number_out_of_range(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "max_speed_fraction: 0.5", "max_speed_fraction: 1.5")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert err.value.field == "safety.max_speed_fraction"
    assert "above the maximum 1.0" in str(err.value)
    assert err.value.location.line == _line_of(path, "max_speed_fraction: 1.5")


def test_negative_mass_is_refused(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "mass: 0.05", "mass: -0.05")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "parts[0].mass" and "greater than 0" in str(err.value)


def test_vector_of_wrong_length(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "box: [0.06, 0.06, 0.012]", "box: [0.06, 0.06]")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "parts[0].geometry.box" and "exactly 3 items" in str(err.value)


def test_choice_with_a_typo_gets_a_suggestion(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "dialect: marlin", "dialect: marlen")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert err.value.field == "machines[0].driver.dialect" and "did you mean 'marlin'?" in str(err.value)


def test_unknown_driver_kind(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "kind: opcua", "kind: opcuaa")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert err.value.field == "machines[1].driver.kind" and "did you mean 'opcua'?" in str(err.value)


def test_unknown_robot_model(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "model: franka_panda", "model: franka")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert err.value.field == "robots[0].model" and "did you mean 'franka_panda'?" in str(err.value)


def test_duplicate_ids(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "  - id: mill\n", "  - id: printer\n")
    with pytest.raises(UnresolvedReference) as err:
        load_cell(path)
    assert err.value.field == "machines[1].id" and "duplicate id 'printer'" in str(err.value)


def test_ids_are_unique_across_robots_machines_and_stations(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "  - id: out_tray\n", "  - id: mill\n")
    with pytest.raises(UnresolvedReference) as err:
        load_cell(path)
    assert "already used" in str(err.value) and err.value.field == "stations[3].id"


def test_duplicate_yaml_key(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "quantity: 1\n", "quantity: 1\nquantity: 2\n")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert "duplicate key 'quantity'" in str(err.value)
    assert err.value.location.line == _line_of(path, "quantity: 2")


def test_unresolved_part_reference_in_placement(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "    - part: peg", "    - part: pge")
    with pytest.raises(UnresolvedReference) as err:
        load_job(path)
    assert err.value.field == "assembly.placements[2].part"
    assert "no part 'pge'" in str(err.value) and "did you mean 'peg'?" in str(err.value)


def test_unresolved_after_reference(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "      tolerance: {position: 0.005, angle: 0.1}",
                   "      tolerance: {position: 0.005, angle: 0.1}\n      after: [bolt]")
    with pytest.raises(UnresolvedReference) as err:
        load_job(path)
    assert err.value.field == "assembly.placements[2].after[0]" and "no part 'bolt'" in str(err.value)


def test_part_without_placement(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "    - part: peg\n      pose: {xyz: [0.0, 0.0, 0.047]}\n"
                   "      tolerance: {position: 0.005, angle: 0.1}\n", "")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "parts[2]" and "no placement" in str(err.value)


def test_unresolved_estop_machine(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "estop: {kind: none}", "estop: {kind: opcua, source: drill/EStop}")
    with pytest.raises(UnresolvedReference) as err:
        load_cell(path)
    assert err.value.field == "safety.estop.source" and "'drill'" in str(err.value)


def test_part_type_missing_from_the_cell() -> None:
    job = load_job(DEMO_JOB)
    with pytest.raises(InfeasibleError) as err:
        check_resources(load_cell(KUKA_CELL), job)
    assert err.value.field == "parts[1].source.process"
    assert "operation 'u1.run.block' (part 'block') needs process 'mill', which no machine of cell 'kuka_cell' " \
           "offers" in str(err.value) and "engrave" in err.value.hint
    assert err.value.location.file == DEMO_JOB and err.value.location.line is not None


def test_a_job_without_a_file_is_refused_by_operation_name() -> None:
    """The same check for a job that came as data (an API request): the operation and field, no position."""
    job = job_from_document(from_data(yaml.safe_load(open(DEMO_JOB))), base_dir=os.path.dirname(DEMO_JOB))
    with pytest.raises(InfeasibleError) as err:
        check_resources(load_cell(KUKA_CELL), job)
    assert err.value.field == "parts[1].source.process" and err.value.location is None
    assert str(err.value).startswith("parts[1].source.process: operation 'u1.run.block' (part 'block') needs "
                                     "process 'mill'")


def test_feeder_part_type_typo(tmp_path) -> None:
    path = _edited(tmp_path, STACK_JOB, "source: {feeder: peg}", "source: {feeder: pegg}")
    with pytest.raises(InfeasibleError) as err:
        check_resources(load_cell(DEMO_CELL), load_job(path))
    assert err.value.field == "parts[2].source.feeder" and "did you mean 'peg'?" in str(err.value)


def test_file_reference_may_not_escape_the_directory(tmp_path) -> None:
    inner = tmp_path / "jobs"
    inner.mkdir()
    (tmp_path / "secret.gcode").write_text("G1 X1\n")
    path = _edited(inner, DEMO_JOB, "file: programs/cap.gcode", "file: ../secret.gcode")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "parts[2].source.program.file" and "escapes the document's directory" in str(err.value)


def test_missing_program_file(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_JOB, "file: programs/cap.gcode", "file: programs/nope.gcode")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert "not found" in str(err.value) and err.value.field == "parts[2].source.program.file"


def test_api_documents_cannot_name_files() -> None:
    data = {"id": "j", "product": "p", "parts": [{"id": "a", "geometry": {"box": [0.01, 0.01, 0.01]}, "mass": 0.1,
            "source": {"process": "print", "program": {"file": "/etc/passwd"}}}],
            "assembly": {"placements": [{"part": "a", "pose": {"xyz": [0, 0, 0.005]}}]}}
    with pytest.raises(ConfigError) as err:
        job_from_document(from_data(data))
    assert "cannot be resolved" in str(err.value) and "inline" in err.value.hint


def test_exactly_one_program_form(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_JOB, "program: {name: POCKET_01}", "program: {name: POCKET_01, inline: G1}")
    shutil.copytree(os.path.join(os.path.dirname(DEMO_JOB), "programs"), tmp_path / "programs")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "parts[1].source.program" and "exactly one of" in str(err.value)


def test_bad_due_time(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_JOB, '"2026-12-01T12:00:00Z"', '"next tuesday"')
    shutil.copytree(os.path.join(os.path.dirname(DEMO_JOB), "programs"), tmp_path / "programs")
    with pytest.raises(ConfigError) as err:
        load_job(path)
    assert err.value.field == "due" and "ISO 8601" in str(err.value)


def test_empty_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as err:
        load_cell(str(empty))
    assert "empty" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_cell(str(tmp_path / "nope.yaml"))
    assert "file not found" in str(err.value)


def test_not_utf8(tmp_path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"cell: \xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        load_cell(str(path))
    assert "UTF-8" in str(err.value)


def test_top_level_must_be_a_mapping(tmp_path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as err:
        load_job(str(path))
    assert "expected a mapping" in str(err.value) and err.value.location.line == 1


def test_box_corners_must_be_ordered(tmp_path) -> None:
    path = _edited(tmp_path, DEMO_CELL, "workspace: {min: [-0.8, -0.8, -0.01], max: [0.9, 0.8, 1.2]}",
                   "workspace: {min: [-0.8, -0.8, 1.5], max: [0.9, 0.8, 1.2]}")
    with pytest.raises(ConfigError) as err:
        load_cell(path)
    assert err.value.field == "safety.workspace.max[2]"
