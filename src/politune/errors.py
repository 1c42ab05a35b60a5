"""The one exception type users see.

Anything raised as :class:`PolituneError` is printed by the CLI as a single line (``error: ...``) with exit
code 2 and no traceback. Messages name the file, line, field or model at fault and what was expected.
"""

from collections.abc import Iterable


class PolituneError(Exception):
    """A user-facing error: bad input, missing model, invalid config. Message is one line."""

    exit_code = 2


def did_you_mean(value: str, choices: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``value`` (``prefix`` is prepended to the
    suggestion, e.g. a dotted config path), or ``""`` when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"; did you mean {prefix + close[0]!r}?" if close else ""
