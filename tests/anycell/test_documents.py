"""Reading documents: ``.json`` is JSON (not YAML 1.1), and both formats point at the spot of a mistake."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from anycell.documents import load_file, parse_text
from anycell.errors import ConfigError
from anycell.job import load_job
from tests.paths import DEMO_JOB


def test_json_numbers_are_json_numbers() -> None:
    doc = parse_text('{"tol": 5e-05, "big": 1E3, "neg": -2.5e-3, "n": null, "ok": true, "s": "5e-05"}',
                     file="x.json")
    assert doc.data == {"tol": 5e-05, "big": 1000.0, "neg": -0.0025, "n": None, "ok": True, "s": "5e-05"}
    assert doc.positions[("tol",)] == (1, 9) and doc.key_positions[("big",)] == (1, 16)


def test_json_strings_use_json_escapes() -> None:
    doc = parse_text('{"path": "a\\/b", "emoji": "\\ud83d\\ude00", "tab": "x\\ty"}', file="x.json")
    assert doc.data == {"path": "a/b", "emoji": "\U0001F600", "tab": "x\ty"}


def test_tab_indented_json_keeps_its_positions() -> None:
    text = '{\n\t"parts": [\n\t\t{"id": "a", "mass": 1e-2}\n\t]\n}\n'
    doc = parse_text(text, file="job.json")
    assert doc.data == {"parts": [{"id": "a", "mass": 0.01}]}
    assert doc.positions[("parts", 0, "mass")] == (3, 23)   # a tab is one column, as in the file


def test_json_syntax_error_has_json_line_and_column() -> None:
    with pytest.raises(ConfigError) as err:
        parse_text('{\n  "a": 1,\n  "b": 2,\n}\n', file="bad.json")
    assert err.value.location.line == 4 and err.value.location.column == 1
    assert "JSON syntax error" in str(err.value)
    with pytest.raises(ConfigError, match="the document is empty"):
        parse_text("  \n", file="empty.json")


def test_duplicate_json_key_is_refused_with_its_position() -> None:
    with pytest.raises(ConfigError) as err:
        parse_text('{"a": 1,\n "a": 2}', file="dup.json")
    assert "duplicate key 'a'" in str(err.value) and err.value.location.line == 2


def test_a_job_written_as_json_loads_and_errors_point_into_it(tmp_path) -> None:
    """The demo job as JSON, with a tolerance in exponent form: it loads; a bad field names its JSON line."""
    data = yaml.safe_load(open(DEMO_JOB, encoding="utf-8"))
    data["assembly"]["placements"][0]["tolerance"]["position"] = 5e-05
    shutil.copytree(os.path.join(os.path.dirname(DEMO_JOB), "programs"), tmp_path / "programs")
    good = tmp_path / "job.json"
    good.write_text(json.dumps(data, indent=2), encoding="utf-8")
    job = load_job(str(good))
    assert job.placement("base").tolerance.position == 5e-05

    data["parts"][0]["mas"] = data["parts"][0].pop("mass")
    bad = tmp_path / "bad.json"
    text = json.dumps(data, indent=2)
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_job(str(bad))
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if '"mas"' in ln)
    assert err.value.location.file == str(bad) and err.value.location.line == line
    assert err.value.field == "parts[0].mas"


def test_yaml_stays_yaml() -> None:
    doc = load_file(DEMO_JOB)
    assert doc.data["quantity"] == 2 and doc.positions[("quantity",)][0] > 1
