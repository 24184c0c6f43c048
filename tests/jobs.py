"""Variants of the shipped example jobs that several test packages build."""

from __future__ import annotations

import yaml

from anycell.documents import from_data
from anycell.job import JobSpec, job_from_document
from tests.paths import ROOT, STACK_JOB


def stack_without_peg(quantity: int) -> JobSpec:
    """The stack assembly without its peg, ``quantity`` units: without the peg the hand clears the
    unit, so a finished unit can leave its fixture for the next one."""
    with open(STACK_JOB, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["quantity"] = quantity
    data["parts"] = [p for p in data["parts"] if p["id"] != "peg"]
    data["assembly"]["placements"] = [p for p in data["assembly"]["placements"] if p["part"] != "peg"]
    return job_from_document(from_data(data), base_dir=ROOT)
