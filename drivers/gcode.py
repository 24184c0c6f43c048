"""G-code program preparation for the serial drivers.

The text rules live in the vocabulary layer (:mod:`anycell.gcode`) so that the planners can
check a job's programs at validate/plan/submit time with exactly the rules the drivers apply
before the first byte is sent. This module re-exports them for the drivers.
"""

from anycell.gcode import (  # noqa: F401 - re-exported
    CODE_ENTRY,
    DEFAULT_MAX_LENGTH,
    PLACEHOLDER,
    SUBCODES,
    WORD,
    GcodeLine,
    check_code_list,
    command_words,
    format_number,
    lines_of,
    normalise_code,
    prepare_program,
    strip_comments,
    substitute,
    used_placeholders,
)
