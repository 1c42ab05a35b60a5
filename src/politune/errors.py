"""The one exception type users see.

Anything raised as :class:`PolituneError` is printed by the CLI as a single line (``error: ...``) with exit
code 2 and no traceback. Messages name the file, line, field or model at fault and what was expected.
"""


class PolituneError(Exception):
    """A user-facing error: bad input, missing model, invalid config. Message is one line."""

    exit_code = 2
