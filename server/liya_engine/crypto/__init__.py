"""Encryption of tenants' provider keys at rest.

``cipher``: AES-256-GCM with per-tenant HKDF keys, the versioned ciphertext
header and re-wrapping; ``master_keys``: the keyring's text form and the one
master-key id rule that settings and ``keys generate`` share. Imports only
``cryptography`` and the shared leaves (``errors``, ``secret``).
"""
