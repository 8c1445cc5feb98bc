"""Files that readers see whole: the one atomic write used for landed files, endpoint configs
and reports."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str | bytes | memoryview) -> Path:
    """Write ``text`` (a string, as UTF-8, or bytes as they are) to ``path`` so that a reader
    sees the old file or the new one, never half of it: a hidden temporary file in the same
    directory, renamed over the target. If writing fails, the temporary file is removed and
    the target is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
