"""G-code program preparation: clean, substitute parameters, validate. Nothing is sent here.

Plain text rules with no I/O, shared by the planners (checks at validate, plan and submit
time) and the serial drivers (the same checks again before the first byte is sent).

A program is checked completely *before* the first byte goes to a machine, so that a bad
line at the end of a file never leaves a half-made part. The rules:

* comments (``; ...`` and ``( ... )``) and blank lines are dropped, words are upper-cased
  and separated by one space, ``%`` tape marks are dropped;
* ``{name}`` placeholders are replaced only by the job's *numbers* (``int``/``float``, finite,
  never ``bool`` or text), formatted without exponent. A placeholder inside a comment is
  dropped with the comment. Anything else between braces is an error. Because the value is
  formatted from a number, a spec cannot smuggle G-code, a checksum ``*``, a comment or a
  real-time byte (``?``, ``!``, ``~``, 0x18) into the stream;
* every remaining line must be plain ASCII, at most ``max_length`` characters, and made only
  of G-code words (a letter and a number); GRBL ``$`` system commands are refused in a
  program (settings are changed through the driver, not by a job);
* every G and M word is normalised the way the firmware will read it (:func:`normalise_code`):
  ``G01`` is ``G1``, and a decimal sub-code the dialect does not have counts as its integer
  code (Marlin reads ``M500.5`` as ``M500``, GRBL reads ``G1.0`` as ``G1``); then it is checked
  against the machine config's ``allowed_gcodes`` (when set) and ``forbidden_gcodes``.

Any failure raises :class:`anycell.errors.ProgramRejected` naming the source line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from anycell.errors import Location, ProgramRejected

#: A placeholder in a program: ``{hotend_temp}``.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: One G-code word: a letter and a signed decimal number (``X-1.5``, ``G1``, ``M104``).
WORD = re.compile(r"([A-Z])([+-]?(?:\d+\.?\d*|\.\d+))")
#: GRBL's line buffer is 80 characters (LINE_BUFFER_SIZE); Marlin's MAX_CMD_SIZE is 96 including
#: the ``N<n> `` prefix and ``*<cs>`` suffix, so 80 leaves room for both.
DEFAULT_MAX_LENGTH = 80


@dataclass(frozen=True)
class GcodeLine:
    """One cleaned, validated line and the 1-based line number in the source text."""

    source_line: int
    text: str


def format_number(value: float) -> str:
    """A number as G-code accepts it: fixed point, at most 6 decimals, no exponent, no ``-0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def strip_comments(line: str) -> str:
    """Drop ``;`` comments and ``( ... )`` comments (GRBL and Marlin both use both)."""
    line = line.split(";", 1)[0]
    out = []
    depth = 0
    for ch in line:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


#: The decimal sub-codes each firmware really has; any other ``G<n>.<m>``/``M<n>.<m>`` is read as
#: ``G<n>``/``M<n>`` (GRBL's parser and Marlin's both drop an unknown fraction, or Marlin without
#: GCODE_SUBCODES ignores every fraction). From GRBL 1.1h gcode.c and Marlin 2.1 gcode.cpp.
SUBCODES: Dict[str, frozenset] = {
    "grbl": frozenset({"G28.1", "G30.1", "G38.2", "G38.3", "G38.4", "G38.5", "G43.1", "G92.1"}),
    "marlin": frozenset({"G38.2", "G38.3", "G38.4", "G38.5", "G92.1", "G92.9", "M115.1"}),
}
#: One entry of ``allowed_gcodes``/``forbidden_gcodes``: a G or M code (``M502``, ``G38.2``), or a GRBL
#: ``$`` system command (always refused in programs anyway).
CODE_ENTRY = re.compile(r"^(?:[GM]\d{1,4}(?:\.\d{1,3})?|\$[A-Z0-9]*)$")


def normalise_code(letter: str, number: str, dialect: Optional[str] = None) -> str:
    """``("M", "0500.50")`` -> ``M500`` (Marlin has no M500.5); ``("G", "38.20")`` -> ``G38.2``.

    With ``dialect`` None a sub-code is kept only if some known dialect has it.
    """
    whole, _, frac = number.partition(".")
    code = f"{letter}{int(whole or '0')}"
    frac = frac.rstrip("0")
    if not frac:
        return code
    known = SUBCODES.get(dialect or "") if dialect else frozenset().union(*SUBCODES.values())
    sub = f"{code}.{frac}"
    return sub if sub in (known or frozenset()) else code


def command_words(text: str, dialect: Optional[str] = None) -> List[str]:
    """The G and M commands of a cleaned line as the firmware reads them (``G01`` -> ``G1``,
    ``M0104`` -> ``M104``, ``M500.5`` -> ``M500``)."""
    return [normalise_code(letter, number.lstrip("+"), dialect) for letter, number in WORD.findall(text)
            if letter in "GM"]


def check_code_list(codes: Sequence[str], field: str = "forbidden_gcodes",
                    dialect: Optional[str] = None) -> List[str]:
    """Validate and normalise an allow/forbid list; raise :class:`ProgramRejected` on a bad entry.

    ``M5OO`` (letter O for zero) or ``M 502`` are refused instead of silently matching nothing.
    """
    out: List[str] = []
    for code in codes:
        text = str(code).strip().upper()
        if not CODE_ENTRY.match(text):
            raise ProgramRejected(f"'{code}' is not a G or M code",
                                  field=field, hint="write codes like M502, G38.2 or (GRBL) $RST")
        if text.startswith("$"):
            out.append(text)
            continue
        out.append(normalise_code(text[0], text[1:], dialect))
    return out


def _reject(message: str, line_no: int, source: Optional[str], hint: Optional[str] = None) -> ProgramRejected:
    return ProgramRejected(f"line {line_no}: {message}", location=Location(file=source, line=line_no), hint=hint)


def substitute(text: str, parameters: Mapping[str, float], line_no: int, source: Optional[str] = None) -> str:
    """Replace ``{name}`` in one comment-free line by the typed number ``parameters[name]``."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in parameters:
            raise _reject(f"placeholder {{{name}}} has no value", line_no, source,
                          "give it in the job's parameters: {" + name + ": 1.0}")
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _reject(f"parameter '{name}' must be a finite number, not {value!r}", line_no, source,
                          "parameters are substituted only as numbers, never as text")
        return format_number(value)

    out = PLACEHOLDER.sub(one, text)
    if "{" in out or "}" in out:
        raise _reject("stray '{' or '}' (placeholders look like {name})", line_no, source)
    return out


def prepare_program(
    text: str,
    parameters: Optional[Mapping[str, float]] = None,
    *,
    allowed: Sequence[str] = (),
    forbidden: Sequence[str] = (),
    max_length: int = DEFAULT_MAX_LENGTH,
    source: Optional[str] = None,
    dialect: Optional[str] = None,
) -> List[GcodeLine]:
    """Clean, substitute and validate a whole program; return the lines to send, in order.

    ``source`` names the file in error locations; ``dialect`` (``grbl``/``marlin``) decides which
    decimal sub-codes exist (see :func:`normalise_code`). Raises :class:`ProgramRejected` on the first
    bad line; nothing is returned (and so nothing can be sent) unless every line passes.
    """
    params: Dict[str, float] = dict(parameters or {})
    allow = set(check_code_list(allowed, "allowed_gcodes", dialect))
    deny = set(check_code_list(forbidden, "forbidden_gcodes", dialect))
    out: List[GcodeLine] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        code = strip_comments(raw)
        try:
            code.encode("ascii")
        except UnicodeEncodeError:
            bad = next(ch for ch in code if ord(ch) > 127)
            raise _reject(f"non-ASCII character {bad!r}", line_no, source,
                          "G-code is plain ASCII; move text into a ; comment") from None
        if any(ord(ch) < 32 and ch not in "\t\r" for ch in code) or "\x7f" in code:
            raise _reject("control character in line (real-time bytes may not appear in a program)",
                          line_no, source)
        code = " ".join(code.split())
        if not code or code == "%":
            continue
        code = substitute(code, params, line_no, source).upper()
        compact = code.replace(" ", "")
        if compact.startswith("$"):
            raise _reject(f"system command '{code}' is not allowed in a program", line_no, source,
                          "settings, homing and unlock are driver operations, not program lines")
        pos = 0
        words: List[str] = []
        for m in WORD.finditer(compact):
            if m.start() != pos:
                break
            words.append(m.group(0))
            pos = m.end()
        if pos != len(compact):
            raise _reject(f"not a G-code word at '{compact[pos:pos + 12]}' in '{code}'", line_no, source,
                          "each word is a letter followed by a number, e.g. G1 X10.5 F1200")
        if any(w[0] == "N" for w in words):
            raise _reject("line numbers (N words) are added by the driver, not the program", line_no, source)
        code = " ".join(words)
        if len(code) > max_length:
            raise _reject(f"line is {len(code)} characters, the limit is {max_length}", line_no, source,
                          "split the move into shorter lines")
        for (letter, number), cmd in zip([w for w in WORD.findall(code) if w[0] in "GM"],
                                         command_words(code, dialect)):
            if cmd in deny:
                whole, _, frac = number.lstrip("+").partition(".")
                exact = f"{letter}{int(whole or '0')}" + (f".{frac.rstrip('0')}" if frac.rstrip("0") else "")
                said = cmd if exact == cmd else f"{letter}{number} (read as {cmd})"
                raise _reject(f"{said} is forbidden on this machine", line_no, source,
                              "the cell config's forbidden_gcodes lists it")
            if allow and cmd not in allow:
                raise _reject(f"{cmd} is not in this machine's allowed_gcodes", line_no, source,
                              "allowed: " + ", ".join(sorted(allow)))
        out.append(GcodeLine(line_no, code))
    if not out:
        raise ProgramRejected("the program has no G-code lines", location=Location(file=source))
    return out


def used_placeholders(text: str) -> List[str]:
    """Placeholder names used outside comments, in order of first use (for validation and docs)."""
    seen: List[str] = []
    for raw in text.splitlines():
        for name in PLACEHOLDER.findall(strip_comments(raw)):
            if name not in seen:
                seen.append(name)
    return seen


def lines_of(program_lines: Iterable[GcodeLine]) -> List[str]:
    """Just the texts of prepared lines."""
    return [g.text for g in program_lines]
