"""Keep credentials out of what is shown and stored: URLs lose their passwords."""

from __future__ import annotations

import re

# scheme://user:password@host  (the user may be empty: scheme://:password@host)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*):(?P<secret>[^@/\s]*)@")


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
