"""The model registry: registered versions, the alias flow and the promotion gate."""
