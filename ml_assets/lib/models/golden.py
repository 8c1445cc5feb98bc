"""Golden examples of users: hand-written requests every promoted user model must score.

They are smoke inference, not accuracy: each example must get a probability (finite, in
[0, 1]); requests with unseen categorical levels, missing values and a brand-new account must
not break scoring; and each model's declared orderings hold (for churn, a dormant user looks
more likely to churn than a highly engaged one; for purchase propensity, the reverse). A model
that fails these is broken however good its test metrics look.
"""

from __future__ import annotations

import math

import pandas as pd

from ml_assets.lib.models.encoding import FeatureEncoding, request_frame

NAN = math.nan


def _activity(events, logins, purchases, revenue, since_login, since_purchase, mom_change):
    """7/30/90-day counts from per-window triples; sessions follow logins."""
    row = {}
    for stem, triple in (
        ("events", events),
        ("logins", logins),
        ("purchases", purchases),
        ("sessions", logins),
        ("revenue", revenue),
    ):
        for days, value in zip((7, 30, 90), triple, strict=True):
            row[f"{stem}_{days}d"] = value
    row |= {
        "days_since_last_login": since_login,
        "days_since_last_purchase": since_purchase,
        "events_30d_mom_change": mom_change,
    }
    return row


_CASES = {
    "engaged_premium": _activity(
        (25, 100, 290), (7, 28, 85), (1, 4, 12), (45.0, 180.0, 540.0), 0, 2, 0.2
    )
    | {"plan_tier": "premium", "country": "US", "account_age_days": 420},
    "dormant_free": _activity((0, 1, 30), (0, 1, 12), (0, 0, 0), (0.0, 0.0, 0.0), 26, NAN, -0.95)
    | {"plan_tier": "free", "country": "US", "account_age_days": 300},
    "new_account": _activity((9, 9, 9), (2, 2, 2), (0, 0, 0), (0.0, 0.0, 0.0), 1, NAN, NAN)
    | {"plan_tier": "basic", "country": "DE", "account_age_days": 3},
    "unseen_levels": _activity((5, 20, 60), (1, 6, 18), (0, 1, 2), (0.0, 20.0, 40.0), 3, 20, 0.0)
    | {"plan_tier": "enterprise", "country": "ZZ", "account_age_days": 200},
    "all_numbers_missing": {"plan_tier": "basic", "country": "GB"},
}
CASES = tuple(_CASES)


def golden_examples(encoding: FeatureEncoding) -> pd.DataFrame:
    """The examples as requests of a model (its signature), indexed by case name; a feature
    a case leaves out is missing."""
    frame = pd.DataFrame.from_dict(_CASES, orient="index").reindex(columns=list(encoding.columns))
    return request_frame(frame, encoding).set_axis(list(_CASES))
