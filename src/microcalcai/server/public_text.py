"""Text from the server's processes made fit for an answer: no traceback frames, no paths.

A training's log lines and error messages reach clients through `GET /train/` and `/info/`
train_stats; the absolute paths in them say how the server's disk is laid out, and traceback
frames say nothing a client can act on.
"""

from __future__ import annotations

import re

_TRACEBACK = re.compile(r"^(\s|Traceback \(most recent call last\)|During handling of|The above exception)")
# An absolute path (POSIX, or Windows with a drive); group 1 is its last component.
_ABSOLUTE = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])*([^\s'\"/\\]*)")


def scrub(text) -> str:
    """Each absolute path cut to its last component (`…/name`)."""
    return _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}" if m.group(1) else "…", str(text))


def scrub_lines(lines) -> list[str]:
    """Log lines without traceback frames, their absolute paths cut."""
    return [scrub(line) for line in lines if line and not _TRACEBACK.match(str(line))]
