"""Point-in-time-correct training sets: the join, lookups over feature tables, labels, checks.

``point_in_time_join`` is the exact contract of DESIGN.md; ``FeatureLookup`` and
``build_training_set`` mirror Databricks Feature Engineering's ``create_training_set`` on top
of it.
"""

from ml_assets.lib.training_sets.lookups import (
    FeatureLookup,
    TrainingSet,
    TrainingSetError,
    build_training_set,
    content_hash,
)
from ml_assets.lib.training_sets.pit import PointInTimeJoinError, point_in_time_join
from ml_assets.lib.training_sets.reference import reference_point_in_time_join

__all__ = [
    "FeatureLookup",
    "PointInTimeJoinError",
    "TrainingSet",
    "TrainingSetError",
    "build_training_set",
    "content_hash",
    "point_in_time_join",
    "reference_point_in_time_join",
]
