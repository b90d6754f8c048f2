"""Liya Engine API (generated stubs live beside this file)."""
