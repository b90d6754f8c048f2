"""Model catalog and routing: which provider and model serve a call.

``catalog`` loads the operator-extendable model data file; ``router`` holds
the routing rules (precedence, overrides, strategies). Pure domain code: it
may import ``liya_engine.config.model``, ``liya_engine.providers.facts`` and
``liya_engine.errors``, never grpc, storage, HTTP clients or the SDKs.
"""
