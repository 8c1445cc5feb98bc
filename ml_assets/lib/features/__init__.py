"""Feature tables: one module per table, each exposing the same two things.

``CONTRACT``: its ``FeatureTableContract``; ``compute_features(input_df, start_date, end_date)``
(or without dates for a table rebuilt whole): the rows of the feature timestamps in that range.
"""
