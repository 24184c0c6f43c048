"""JSON Schemas of the two documents, generated from the same dataclasses the loader uses."""

from __future__ import annotations

from typing import Any, Dict

from .cell import CellConfig
from .job import JobSpec
from .typed import json_schema

SCHEMA_BASE = "https://anycell.dev/schemas"


def schema_for(which: str) -> Dict[str, Any]:
    """``cell`` or ``job`` -> its JSON Schema (2020-12)."""
    if which == "cell":
        return json_schema(CellConfig, "anycell cell config", f"{SCHEMA_BASE}/cell.schema.json")
    if which == "job":
        return json_schema(JobSpec, "anycell job spec", f"{SCHEMA_BASE}/job.schema.json")
    raise ValueError(f"unknown schema '{which}' (cell or job)")
