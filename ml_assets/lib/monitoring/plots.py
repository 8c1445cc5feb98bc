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


def quality_chart(
    series: dict[str, Sequence[tuple[dt.date, float]]], *, floor: float, title: str
) -> bytes:
    """A PNG line chart of realised ROC AUC per window, one line per model version (and
    source), with the floor the champion is held to."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for name, points in series.items():
        ax.plot(
            [d for d, _ in points], [v for _, v in points], marker=".", linewidth=1.2, label=name
        )
    ax.axhline(floor, color="red", linestyle="--", linewidth=1, label=f"floor {floor:.3f}")
    ax.set_ylabel("ROC AUC")
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return _png(fig, plt)


def reliability_chart(
    curves: dict[str, Sequence[tuple[float, float, int]]], *, title: str
) -> bytes:
    """A PNG reliability curve (mean prediction against the observed rate per bin) for each
    named version, with the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for name, bins in curves.items():
        ax.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", linewidth=1.2, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title, loc="left", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _png(fig, plt)


def _png(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buffer.getvalue()
