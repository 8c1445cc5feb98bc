"""Monitoring: drift between the training data and what the model sees now."""
