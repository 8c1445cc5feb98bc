"""Models: training, evaluation and the served form of the churn classifier (no Dagster)."""
