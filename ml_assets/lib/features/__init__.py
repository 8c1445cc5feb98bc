"""Feature tables: one module per table, each exposing the same two things.

``CONTRACT``: its ``FeatureTableContract``; ``compute_features(source_df, start_date,
end_date)``: the rows whose feature timestamps fall in that range of UTC days (a table rebuilt
whole, ``user_profile``, takes the range as optional, None meaning unbounded).
"""
