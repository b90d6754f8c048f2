"""Liya Engine BYOK service."""
