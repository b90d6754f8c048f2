"""``liya.engine.v1.InferenceService``: protos in, domain calls, protos out."""

from __future__ import annotations

from liya.engine.v1 import inference_service_pb2 as pb
from liya.engine.v1 import inference_service_pb2_grpc as pb_grpc
from liya_engine.api.calls import current_call
from liya_engine.inference.ports import Message
from liya_engine.inference.service import CompletionInput, InferenceService, Usage


def _input(request) -> CompletionInput:
    return CompletionInput(
        intent=request.intent,
        messages=tuple(Message(m.role, m.content) for m in request.messages),  # type: ignore[arg-type]
        max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
        temperature=request.temperature if request.HasField("temperature") else None,
    )


def usage_proto(u: Usage) -> pb.Usage:
    """The proto of a call's usage."""
    return pb.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        cost_usd=u.cost_usd,
        provider=u.provider,
        model=u.model,
        mode=u.mode,
        request_id=u.request_id,
        served_model=u.served_model,
        cost_source=u.cost_source,
    )


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    def __init__(self, inference: InferenceService) -> None:
        self._inference = inference

    async def Complete(self, request: pb.CompleteRequest, context) -> pb.CompleteResponse:
        call = current_call()
        result = await self._inference.complete(
            call.identity.tenant_id,
            call.request_id,
            _input(request),
            deadline=context.time_remaining(),
        )
        return pb.CompleteResponse(
            message=pb.ChatMessage(role="assistant", content=result.text),
            finish_reason=result.finish_reason,
            usage=usage_proto(result.usage),
        )

    async def CompleteStream(self, request: pb.CompleteStreamRequest, context):
        call = current_call()
        async for piece in self._inference.complete_stream(
            call.identity.tenant_id,
            call.request_id,
            _input(request),
            deadline=context.time_remaining(),
        ):
            out = pb.CompleteStreamResponse(delta=piece.delta, finish_reason=piece.finish_reason)
            if piece.usage is not None:
                out.usage.CopyFrom(usage_proto(piece.usage))
            yield out
