"""Keep credentials out of what is shown and stored: URLs lose their passwords, in the
authority (``user:password@``) and in the query (``?password=``, ``&token=``, as libpq and
Spark Connect strings accept them)."""

from __future__ import annotations

import re

# scheme://user:password@host  (the user may be empty: scheme://:password@host)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*):(?P<secret>[^@/\s]*)@")


# ?password=...  &sslpassword=...  ;token=...  (the value up to the next separator)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:[a-z_]*password|passwd|pwd|[a-z_]*token|[a-z_]*secret|[a-z_]*key)=)"
    r"(?P<secret>[^&;\s#'\"]*)",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """``text`` with the password or token of every URL in it replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}***", text)
