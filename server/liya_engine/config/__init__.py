"""The config plane: tenants' provider keys and model settings.

``model`` (domain types and the field tables), ``paths`` (the field path
grammar), ``changes`` (typed changes, each validating and applying itself),
``patch`` (AIP-134 rules: a request body to changes), ``keys`` (previews,
sealing, resent keys), ``validation`` (field checks), ``endpoints`` (the one
Azure endpoint policy), ``service`` (the use cases), ``audit_pages``,
``ports`` (the storage it needs, as Protocols) and ``rewrap``. Domain code: may
import ``errors``, ``secret``, ``redact``, ``settings``, ``identity``,
``crypto``, ``providers.facts`` and ``routing``; never protobuf messages, grpc
or storage.
"""
