"""Fuzz the loaders and the JSON API (hypothesis, fixed budget): no traceback, no hang over 5 s, and every
refusal is an anycell error that names a field or a location.
"""

from __future__ import annotations

import json
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from anycell.agent import api  # noqa: E402
from anycell.documents import parse_text  # noqa: E402
from anycell.errors import AnycellError  # noqa: E402

BUDGET = settings(max_examples=150, deadline=5000, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
documents = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                         max_leaves=30)


def _refusal_is_clear(exc: AnycellError) -> None:
    assert exc.field or exc.location is not None or exc.hint, f"refusal without field, place or hint: {exc}"


@BUDGET
@given(st.text(max_size=300))
def test_yaml_text_never_tracebacks(text: str) -> None:
    t0 = time.monotonic()
    try:
        parse_text(text, "fuzz.yaml")
    except AnycellError as exc:
        _refusal_is_clear(exc)
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
@BUDGET
@given(st.integers(min_value=1, max_value=6), st.integers(min_value=2, max_value=12))
def test_alias_bombs_are_refused_quickly(levels: int, fan: int) -> None:
    lines = ['a0: &a0 ["x"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    t0 = time.monotonic()
    try:
        parse_text("\n".join(lines), "bomb.yaml")
    except AnycellError as exc:
        _refusal_is_clear(exc)
    assert time.monotonic() - t0 < 5


@BUDGET
@given(documents)
def test_api_requests_never_traceback(job) -> None:  # noqa: ANN001
    for raw in ({"request_id": "f1", "op": "submit", "job": job}, {"request_id": "f2", "op": "resume",
                                                                  "job_id": "x", "retry": job}):
        try:
            text = json.dumps(raw, allow_nan=True)
        except (ValueError, OverflowError):
            continue
        try:
            api.parse_request(text)
        except AnycellError as exc:
            _refusal_is_clear(exc)


@BUDGET
@given(documents)
def test_job_documents_never_traceback(job) -> None:  # noqa: ANN001
    from anycell.documents import from_data
    from anycell.job import job_from_document

    try:
        job_from_document(from_data({"id": "j", "product": "p", "parts": job, "assembly": job}, file="<fuzz>"))
    except AnycellError as exc:
        _refusal_is_clear(exc)


def test_deep_nesting_request_is_refused_not_a_crash() -> None:
    raw = '{"request_id":"deep","op":"submit","job":' + "[" * 1000 + "]" * 1000 + "}"
    with pytest.raises(AnycellError) as info:
        api.parse_request(raw)
    assert "nest" in str(info.value)
    with pytest.raises(AnycellError):
        api.parse_request('{"request_id":"deep","op":"list","all":' + "[" * 100000 + "]" * 100000 + "}")


@pytest.mark.parametrize("retry", ["false", "true", 0, 1, None])
def test_retry_must_be_a_json_boolean(retry) -> None:  # noqa: ANN001
    with pytest.raises(AnycellError) as info:
        api.parse_request({"request_id": "r", "op": "resume", "job_id": "j", "retry": retry})
    assert info.value.field == "retry"


@pytest.mark.parametrize("job_id", ["../x", "/etc/passwd", "a/b", "", "a" * 200, ".hidden", "x..y"])
def test_job_ids_are_names_never_paths(job_id: str) -> None:
    with pytest.raises(AnycellError) as info:
        api.parse_request({"request_id": "r", "op": "get", "job_id": job_id})
    assert info.value.field == "job_id"
