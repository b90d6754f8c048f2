"""The gRPC layer: thin servicers that turn protos into domain calls and back.

``calls`` is the per-call guard (identity, request id, metrics, the one error
answer), ``status`` the one mapping of the error tree to ``google.rpc.Status``,
``convert`` protos to domain values and back, ``config_servicer`` and
``inference_servicer`` the services, ``reflection`` server reflection (v1 and
v1alpha) from the packaged descriptor set. May import grpc, the generated stubs and
the domain; holds no business rule of its own.
"""
