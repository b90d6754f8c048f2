"""Encryption of tenants' provider keys at rest (see ``cipher``)."""
