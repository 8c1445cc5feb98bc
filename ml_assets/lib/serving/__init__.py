"""Serving: endpoint configs, the online feature store and what the gateway does per request."""
