"""A drift monitor's limits as validated data (kept free of Evidently, so a model declaration
that carries them loads anywhere, a Databricks job included).

mlops-stacks' defaults are per metric; these are shares of drifted columns: WARN when the
latest window is at or above ``warn_at``; ERROR when ``error_at`` is reached in ``k`` of the
last ``n`` compared windows, the latest included. The error share is 0.4, not a half: every
model input is compared, a fifth of them 90-day windows that move slowly, so a shift in
engagement that moves the 7- and 30-day features moves about half of the columns in three
weeks, and clean windows stay below 0.3 (``make check --inject drift`` and the tests).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DriftLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warn_at: float = Field(0.3, gt=0, le=1, description="share of drifted columns: WARN")
    error_at: float = Field(0.4, gt=0, le=1, description="share of drifted columns: a breach")
    k: int = Field(2, ge=1, description="breaches needed for ERROR ...")
    n: int = Field(5, ge=1, description="... among the last n compared windows")

    def describe(self) -> str:
        return (
            f"WARN when at least {self.warn_at:.0%} of the columns drift; ERROR when at least "
            f"{self.error_at:.0%} do in {self.k} of the last {self.n} compared windows. A "
            "column drifts by Evidently's test for its type and size (its method and threshold "
            "are in the table below)."
        )

    @model_validator(mode="after")
    def _ordered(self) -> DriftLimits:
        if not self.warn_at <= self.error_at:
            raise ValueError(
                f"warn_at ({self.warn_at}) must be at most error_at ({self.error_at})."
            )
        if not self.k <= self.n:
            raise ValueError(f"k ({self.k}) breaches cannot be found in n ({self.n}) windows.")
        return self
