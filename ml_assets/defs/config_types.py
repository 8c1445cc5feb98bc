"""Types of run config fields that Dagster's config schema holds as plain strings, checked when
the launchpad's (or a schedule's) config is read, so that a mistake names its field."""

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator


def _iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected a date as YYYY-MM-DD, e.g. 2026-02-01; found {value!r}"
        ) from None
    return value


IsoDate = Annotated[str, AfterValidator(_iso_date)]
