"""Run config fields holding dates are checked when the config is read, naming the field."""

import dagster as dg
import pydantic
import pytest

from ml_assets.defs.landing.assets import LandingConfig, demo_source
from ml_assets.defs.training_sets.assets import TrainingSetConfig
from ml_assets_tests.defs.conftest import build_resources, tiny_settings


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        (LandingConfig, "through_date", "2026-02-30"),
        (LandingConfig, "through_date", "yesterday"),
        (TrainingSetConfig, "validation_start", "2026-13-01"),
        (TrainingSetConfig, "test_start", "2026/03/01"),
    ],
)
def test_a_date_that_is_not_an_iso_date_is_refused_naming_the_field(config, field, value):
    with pytest.raises(pydantic.ValidationError) as refused:
        config(**{field: value})
    message = str(refused.value)
    assert field in message and repr(value) in message and "YYYY-MM-DD" in message


def test_iso_dates_and_unset_dates_are_taken_as_given():
    assert LandingConfig(through_date="2026-02-28").through_date == "2026-02-28"
    assert LandingConfig().through_date is None
    cutoffs = TrainingSetConfig(validation_start="2026-02-01", test_start="2026-02-15").cutoffs()
    assert (str(cutoffs.validation_start), str(cutoffs.test_start)) == ("2026-02-01", "2026-02-15")


def test_a_launch_with_a_bad_date_fails_before_landing_anything(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    result = dg.materialize(
        [demo_source],
        resources=build_resources(settings),
        run_config={"ops": {"landing__demo_source": {"config": {"through_date": "2026-02-30"}}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert "through_date" in error.message and "'2026-02-30'" in error.message
    assert not (tmp_path / "home" / "landing" / "events").exists()
