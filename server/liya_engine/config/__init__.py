"""The config plane: tenants' provider keys and model settings."""
