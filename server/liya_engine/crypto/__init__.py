"""Encryption of tenants' provider keys at rest.

``cipher`` holds the envelope encryption (AES-256-GCM under HKDF-derived
per-tenant keys; imports ``cryptography``); ``master_keys`` holds the
``LIYA_MASTER_KEYS`` format and the one master-key id rule (standard library
only, so the settings reader can use it). Nothing here imports storage,
transport or SDK code.
"""
