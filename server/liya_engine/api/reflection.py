"""Server reflection, ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``,
serving the proto files as written: with their comments.

grpcio-reflection (1.85) speaks v1alpha only, re-serialises each file from the
descriptor pool (which drops ``source_code_info``, so ``grpcurl describe``
shows no documentation) and cannot find the file of a method symbol such as
``liya.engine.v1.ConfigService.UpdateConfig``. This servicer answers from the
descriptor set that ``make gen`` packages with the server
(``liya_engine/data/liya-engine.binpb``: the API's files, their imports and
``google/rpc`` with source info), plus the files of the standard services
served beside the API (health, reflection).

The two versions are one protocol under two package names: their messages
have the same fields and numbers, so both are served with the request and
response classes grpcio-reflection generated for v1alpha.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from functools import cache
from importlib import resources

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2 as messages

SERVICE_V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
METHOD = "ServerReflectionInfo"
DESCRIPTOR_SET = "liya-engine.binpb"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """``grpc/reflection/v1/reflection.proto``: the v1alpha file renamed (the
    only difference between the two protocols, apart from options)."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(messages.DESCRIPTOR.serialized_pb)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            field.type_name = field.type_name.replace(".v1alpha.", ".v1.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    return proto


def _without_json_names(messages_: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages_:
        for field in (*message.field, *message.extension):
            field.ClearField("json_name")
        _without_json_names(message.nested_type)


@cache
def packaged_files() -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    """The packaged descriptor set (with comments), then the standard services'
    files, which the set does not hold.

    protoc records each field's ``json_name``; served as is, grpcurl would print
    ``servingProvider`` where it always printed ``serving_provider``, breaking
    scripts that read its output. Without it grpcurl prints the proto names
    (both spellings are still accepted in requests)."""
    data = resources.files("liya_engine.data").joinpath(DESCRIPTOR_SET).read_bytes()
    files = list(descriptor_pb2.FileDescriptorSet.FromString(data).file)
    for proto in files:
        _without_json_names(proto.message_type)
        for extension in proto.extension:
            extension.ClearField("json_name")
    for module in (health_pb2, messages):
        files.append(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    files.append(_v1_file())
    return tuple(files)


class DescriptorIndex:
    """Files by name, the file defining each symbol, and extensions by
    (extended message, field number)."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self._bytes: dict[str, bytes] = {}
        self.symbols: dict[str, str] = {}
        self.extensions: dict[tuple[str, int], str] = {}
        self.messages: set[str] = set()
        for proto in files:
            if proto.name in self._files:
                continue  # the packaged set comes first and wins
            self._files[proto.name] = proto
            self._bytes[proto.name] = proto.SerializeToString()
            self._index_file(proto)

    def _add(self, name: str, file_name: str) -> None:
        self.symbols.setdefault(name, file_name)

    def _index_file(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        scope = f"{proto.package}." if proto.package else ""
        for message in proto.message_type:
            self._index_message(message, scope, proto.name)
        for enum in proto.enum_type:
            self._index_enum(enum, scope, proto.name)
        for extension in proto.extension:
            self._index_extension(extension, scope, proto.name)
        for service in proto.service:
            self._add(scope + service.name, proto.name)
            for method in service.method:
                self._add(f"{scope}{service.name}.{method.name}", proto.name)

    def _index_message(self, message, scope: str, file_name: str) -> None:
        name = scope + message.name
        self._add(name, file_name)
        self.messages.add(name)
        for field in message.field:
            self._add(f"{name}.{field.name}", file_name)
        for oneof in message.oneof_decl:
            self._add(f"{name}.{oneof.name}", file_name)
        for nested in message.nested_type:
            self._index_message(nested, f"{name}.", file_name)
        for enum in message.enum_type:
            self._index_enum(enum, f"{name}.", file_name)
        for extension in message.extension:
            self._index_extension(extension, f"{name}.", file_name)

    def _index_enum(self, enum, scope: str, file_name: str) -> None:
        self._add(scope + enum.name, file_name)
        for value in enum.value:
            # Enum values are scoped beside their enum, as in C++.
            self._add(scope + value.name, file_name)

    def _index_extension(self, extension, scope: str, file_name: str) -> None:
        self._add(scope + extension.name, file_name)
        self.extensions[(extension.extendee.lstrip("."), extension.number)] = file_name

    def has_file(self, name: str) -> bool:
        return name in self._files

    def file_and_dependencies(self, name: str) -> list[bytes]:
        """The serialized file, then every file it imports, transitively."""
        order: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current in order or current not in self._files:
                continue
            order.append(current)
            pending.extend(reversed(self._files[current].dependency))
        return [self._bytes[n] for n in order]

    def extension_numbers(self, message: str) -> list[int]:
        return sorted(number for (extendee, number) in self.extensions if extendee == message)


def _not_found(what: str) -> messages.ErrorResponse:
    return messages.ErrorResponse(
        error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message=f"{what} not found"
    )


class ReflectionServicer:
    """Answers ``ServerReflectionInfo`` streams for both protocol versions."""

    def __init__(self, service_names: Iterable[str], index: DescriptorIndex) -> None:
        self._index = index
        self._services = tuple(sorted({*service_names, SERVICE_V1, SERVICE_V1ALPHA}))
        missing = [s for s in self._services if s not in index.symbols]
        if missing:
            raise ValueError(f"no descriptor for {missing}: run `make gen`")

    def answer(
        self, request: messages.ServerReflectionRequest
    ) -> messages.ServerReflectionResponse:
        """The response to one request of the stream."""
        reply = messages.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        index = self._index
        if kind == "list_services":
            reply.list_services_response.service.extend(
                messages.ServiceResponse(name=name) for name in self._services
            )
        elif kind == "file_by_filename":
            name = request.file_by_filename
            self._files(reply, name if index.has_file(name) else None, f"file {name!r}")
        elif kind == "file_containing_symbol":
            symbol = request.file_containing_symbol
            self._files(reply, index.symbols.get(symbol), f"symbol {symbol!r}")
        elif kind == "file_containing_extension":
            ext = request.file_containing_extension
            key = (ext.containing_type, ext.extension_number)
            self._files(reply, index.extensions.get(key), f"extension {key}")
        elif kind == "all_extension_numbers_of_type":
            name = request.all_extension_numbers_of_type
            if name in index.messages:
                reply.all_extension_numbers_response.base_type_name = name
                reply.all_extension_numbers_response.extension_number.extend(
                    index.extension_numbers(name)
                )
            else:
                reply.error_response.CopyFrom(_not_found(f"type {name!r}"))
        else:
            reply.error_response.CopyFrom(
                messages.ErrorResponse(
                    error_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    error_message="empty reflection request",
                )
            )
        return reply

    def _files(self, reply, file_name: str | None, what: str) -> None:
        if file_name is None:
            reply.error_response.CopyFrom(_not_found(what))
        else:
            reply.file_descriptor_response.file_descriptor_proto.extend(
                self._index.file_and_dependencies(file_name)
            )

    async def info(
        self, requests: AsyncIterator[messages.ServerReflectionRequest], context
    ) -> AsyncIterator[messages.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)


def enable(server: grpc.aio.Server, service_names: Iterable[str]) -> ReflectionServicer:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names``
    and both reflection services."""
    servicer = ReflectionServicer(service_names, DescriptorIndex(packaged_files()))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.info,
        request_deserializer=messages.ServerReflectionRequest.FromString,
        response_serializer=messages.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(s, {METHOD: handler})
            for s in (SERVICE_V1, SERVICE_V1ALPHA)
        ]
    )
    return servicer
