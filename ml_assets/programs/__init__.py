"""The project's programs, apart from the code location (``ml_assets.definitions``):
``run`` (``make run``), ``check`` (``make check``), ``gateway`` (``make serve``), ``lanes`` (the
engine lanes' fingerprints and comparison), ``reporting`` (what they print and write from a
run's results) and ``instance`` (the local Dagster instance's storage, named by
``deploy/dagster.yaml``)."""
