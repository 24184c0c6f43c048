"""Program preparation: cleaning, typed substitution and validation (no device involved)."""

import pytest

from anycell.errors import ProgramRejected
from anycell.drivers.gcode import check_code_list, command_words, format_number, prepare_program


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


@pytest.mark.parametrize("line,dialect", [
    ("M500.5", "marlin"), ("M502.9", "marlin"), ("M0502.90", "marlin"), ("M502.0", None), ("M502.1", None),
])
def test_a_decimal_sub_code_counts_as_the_code_the_firmware_runs(line, dialect):
    # real Marlin ignores the decimal part: M502.9 is a factory reset
    with pytest.raises(ProgramRejected, match="M502|M500"):
        prepare_program(line, forbidden=["M500", "M502"], dialect=dialect)


def test_placeholder_cannot_build_a_forbidden_sub_code():
    with pytest.raises(ProgramRejected, match=r"M500\.5 \(read as M500\) is forbidden"):
        prepare_program("M{p}", {"p": 500.5}, forbidden=["M500"], dialect="marlin")


def test_real_sub_codes_stay_distinct():
    assert command_words("G38.2 Z-5 F100", "grbl") == ["G38.2"]
    assert command_words("G38.2 Z-5 F100", "marlin") == ["G38.2"]
    assert command_words("G43.1 Z1", "marlin") == ["G43"]   # GRBL has G43.1, Marlin does not
    assert texts(prepare_program("G38.2 Z-5 F100", forbidden=["G38"], dialect="grbl")) == ["G38.2 Z-5 F100"]
    with pytest.raises(ProgramRejected, match="G38.2 is forbidden"):
        prepare_program("G38.20 Z-5 F100", forbidden=["G38.2"], dialect="grbl")


@pytest.mark.parametrize("entry", ["M5OO", "M 502", "502", "X1", "M502;", ""])
def test_allow_and_forbid_lists_are_validated(entry):
    with pytest.raises(ProgramRejected, match="is not a G or M code"):
        check_code_list([entry], "forbidden_gcodes")
    assert check_code_list(["m0502", "G38.20", "$RST"], dialect="grbl") == ["M502", "G38.2", "$RST"]


def test_cell_config_refuses_a_bad_forbidden_entry(tmp_path):
    from anycell.cell import load_cell
    from anycell.errors import ConfigError
    from tests.paths import DEMO_CELL

    text = open(DEMO_CELL, encoding="utf-8").read().replace("forbidden_gcodes: [M500, M502, M997]",
                                                            "forbidden_gcodes: [M5OO, M502, M997]")
    bad = tmp_path / "cell.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_cell(str(bad))
    assert "forbidden_gcodes" in str(err.value) and "M5OO" in str(err.value)
