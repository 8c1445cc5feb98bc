"""``python -m ml_assets.programs.gateway``: the gateway (``make serve``)."""

from ml_assets.programs.gateway import main

main()
