"""Program preparation: cleaning, typed substitution and validation (no device involved)."""

import pytest

from anycell.errors import ProgramRejected
from anycell.drivers.gcode import format_number, prepare_program


def texts(lines):
    return [g.text for g in lines]


def test_comments_stripped_and_normalised():
    prog = "; header {ignored}\n%\ng1 x10  y2.5 (move) F{feed}\n\n  M104 S{t} ; heat\n"
    lines = prepare_program(prog, {"feed": 1200, "t": 210.5})
    assert texts(lines) == ["G1 X10 Y2.5 F1200", "M104 S210.5"]
    assert [g.source_line for g in lines] == [3, 5]


def test_numbers_formatted_without_exponent():
    assert format_number(1e-7) == "0"
    assert format_number(0.002) == "0.002"
    assert format_number(-0.0) == "0"
    assert format_number(12000) == "12000"


@pytest.mark.parametrize("value", ["10\nM502", "1;M502", True, float("nan"), "5"])
def test_only_numbers_are_substituted(value):
    with pytest.raises(ProgramRejected) as err:
        prepare_program("G1 X{x}", {"x": value})
    assert "line 1" in str(err.value)


@pytest.mark.parametrize("prog,needle", [
    ("G1 X1\nM502", "M502 is forbidden"),
    ("G1 X1\nG1 X°", "non-ASCII"),
    ("G1 X1\n$130=1", "system command"),
    ("G1 X1\nG1 X1 ?", "not a G-code word"),
    ("G1 X1\nN5 G1 X1*33", "not a G-code word"),
    ("G1 X1\nG1 X{missing}", "has no value"),
    ("G1 X1\nG1 " + "X1 " * 40, "characters, the limit"),
    ("G1 X1\nG1 X1 \x18", "control character"),
])
def test_bad_lines_rejected_with_line_number(prog, needle):
    with pytest.raises(ProgramRejected) as err:
        prepare_program(prog, {}, forbidden=["M502"])
    assert needle in str(err.value)
    assert "line 2" in str(err.value)


def test_allowed_list_and_zero_padded_codes():
    assert texts(prepare_program("G01 X1\nG0 Y2", allowed=["G1", "G0"])) == ["G01 X1", "G0 Y2"]
    with pytest.raises(ProgramRejected, match="M3 is not in this machine's allowed_gcodes"):
        prepare_program("G1 X1\nM03 S100", allowed=["G1"])
    with pytest.raises(ProgramRejected, match="M104 is forbidden"):
        prepare_program("M0104 S1", forbidden=["M104"])
