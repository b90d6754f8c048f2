"""The HTTP/JSON surface (``LIYA_HTTP_LISTEN_ADDRESS``): the gRPC methods served
as the ``google.api.http`` annotations of their descriptors say.

``routes`` reads the routes from the descriptors the generated modules put in
protobuf's pool; ``transcode`` turns HTTP requests into request messages and
answers (and errors) into protobuf JSON and the AIP-193 error body; ``context``
is the in-process stand-in for ``grpc.aio.ServicerContext`` that lets the
same ``CallGuard``-wrapped servicer methods serve HTTP; ``server`` is the
aiohttp server itself.
"""
