"""Request parsing and validation (anycell.agent.api), and concurrent duplicate requests on the service."""

from __future__ import annotations

import json
import os
import threading

import pytest
import yaml

from anycell.agent import api
from anycell.agent.cell_service import CellService
from anycell.agent.executor import DryRunRunner
from anycell.agent.journal import Journal
from anycell.cell import load_cell
from anycell.errors import ConfigError
from tests.paths import DEMO_CELL, DEMO_JOB


@pytest.mark.parametrize("raw,field,text", [
    ("", None, "not JSON"),
    ("[1, 2]", None, "JSON object"),
    ('{"op": "list"}', "request_id", "request_id"),
    ('{"request_id": "", "op": "list"}', "request_id", "non-empty"),
    ('{"request_id": 5, "op": "list"}', "request_id", "request_id"),
    ('{"request_id": "r", "op": "delete_everything"}', "op", "unknown op"),
    ('{"request_id": "r", "op": "get"}', "job_id", "needs 'job_id'"),
    ('{"request_id": "r", "op": "get", "job_id": 3}', "job_id", "string"),
    ('{"request_id": "r", "op": "submit", "job": "a yaml string"}', "job", "JSON object"),
    ('{"request_id": "r", "op": "list", "colour": "red"}', "colour", "unknown field"),
])
def test_bad_requests_name_the_field(raw: str, field, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        api.parse_request(raw)
    assert info.value.field == field and text in info.value.message


def test_good_request_and_error_shape() -> None:
    req = api.parse_request(b'{"request_id": "r1", "op": "resume", "job_id": "j", "retry": true}')
    assert (req.request_id, req.op, req.args) == ("r1", "resume", {"job_id": "j", "retry": True})
    err = api.error("r1", "get", ConfigError("no job 'x'", field="job_id", hint="list shows the jobs"))
    assert err == {"request_id": "r1", "op": "get", "ok": False,
                   "error": {"error": "ConfigError", "message": "no job 'x'", "field": "job_id",
                             "hint": "list shows the jobs"}}
    assert api.request_id_of('{"request_id": "z", "op": 1}') == "z"
    assert api.request_id_of("garbage") is None


def test_program_files_travel_inline(tmp_path) -> None:
    with open(DEMO_JOB, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    out = api.inline_program_files(data, os.path.dirname(DEMO_JOB))
    progs = [p["source"].get("program") for p in out["parts"] if p["source"].get("program")]
    cap = [p for p in progs if "inline" in p]
    assert cap and cap[0]["inline"] == open(os.path.join(os.path.dirname(DEMO_JOB), "programs", "cap.gcode")).read()
    assert any("name" in p for p in progs)                 # named programs stay named
    assert data["parts"][2]["source"]["program"] == {"file": "programs/cap.gcode"}   # the input is untouched
    with pytest.raises(ConfigError, match="cannot read program file"):
        api.inline_program_files(data, str(tmp_path))


def test_concurrent_duplicates_make_one_job(tmp_path) -> None:
    cell = load_cell(DEMO_CELL)
    with open(DEMO_JOB, encoding="utf-8") as handle:
        doc = api.inline_program_files(yaml.safe_load(handle), os.path.dirname(DEMO_JOB))
    svc = CellService(cell, Journal(str(tmp_path / "j.db")), lambda plan, job: DryRunRunner(0.0))
    text = json.dumps({"request_id": "dup", "op": "submit", "job": doc})
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(svc.handle(text))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 4 and all(a == answers[0] for a in answers) and answers[0]["ok"]
    assert len(svc.journal.jobs()) == 1


def test_a_mesh_file_travels_inline_and_loads_as_the_same_shape() -> None:
    import os

    import yaml

    from anycell.agent.api import inline_program_files
    from anycell.documents import from_data
    from anycell.job import job_from_document, load_job
    from tests.paths import ROOT

    path = os.path.join(ROOT, "examples", "jobs", "bracket_clip.yaml")
    data = inline_program_files(yaml.safe_load(open(path)), os.path.dirname(path))
    geometry = data["parts"][0]["geometry"]
    assert "mesh" not in geometry and geometry["mesh_format"] == "obj" and geometry["mesh_inline"].startswith("#")
    sent = job_from_document(from_data(data))            # as the agent gets it: no base folder
    assert sent.part("bracket").geometry.size == load_job(path).part("bracket").geometry.size
