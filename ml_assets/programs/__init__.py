"""The project's programs, apart from the code location (``ml_assets.definitions``):
``run`` (``make run``), ``check`` (``make check``), ``gateway`` (``make serve``), ``lanes`` (the
engine lanes' fingerprints and comparison) and ``reporting`` (what they print and write from a
run's results)."""
