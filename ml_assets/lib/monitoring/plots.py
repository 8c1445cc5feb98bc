"""The drift share over time as a picture: every compared window, with the warning and error
levels drawn in. (Dagster's own plot by partition reads the newest 100 partition keys counted
back from today, so a calendar that ended in the past, like the demo's, plots nothing there.)"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence


def drift_share_chart(
    history: Sequence[tuple[dt.date, float]], *, warn_at: float, error_at: float, title: str
) -> bytes:
    """A PNG line chart of the share of drifted columns per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    days, shares = [d for d, _ in history], [s for _, s in history]
    ax.plot(days, shares, marker=".", linewidth=1.2, label="share of drifted columns")
    ax.axhline(warn_at, color="orange", linestyle="--", linewidth=1, label=f"warn {warn_at:g}")
    ax.axhline(error_at, color="red", linestyle="--", linewidth=1, label=f"error {error_at:g}")
    ax.set_ylim(0, 1)
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
