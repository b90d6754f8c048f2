"""One source for every error reason: ``enum ErrorReason`` in
``protos/liya/engine/v1/error_reason.proto``.

Fails when a reason exists on one side only (the enum, the server's error
classes, the client's exception classes), when a class answers with another
gRPC code than the one the enum documents for its reason, and checks that a
BadRequest never carries more than 20 violations (the 20th says how many more),
so that every error fits in the default gRPC metadata limit."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

import liya_engine_client as lc
from helpers import auth, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1.error_reason_pb2 import ErrorReason
from liya_engine import errors
from liya_engine.api import status

PROTO = Path(__file__).resolve().parent.parent / "protos/liya/engine/v1/error_reason.proto"
ENUM_REASONS = set(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}

# gRPC limits the metadata (headers and trailers) a client accepts to 8 KiB by
# default, counting each entry as name + value + 32 bytes (RFC 7541's size).
METADATA_LIMIT = 8 * 1024


def documented_codes() -> dict[str, str]:
    """Each enum value's "gRPC code: X." line, read from the proto's comments."""
    text = PROTO.read_text()
    found = re.findall(r"// gRPC code: ([A-Z_]+)\.\n(?:\s*//.*\n)*\s*([A-Z_]+) = \d+;", text)
    return {reason: code for code, reason in found}


def server_classes() -> dict[str, list[type]]:
    """Each reason the server can answer with -> the classes that declare it."""
    out: dict[str, list[type]] = {}
    todo = list(errors.LiyaError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "reason" in vars(cls):
            out.setdefault(cls.reason, []).append(cls)
    out.setdefault(errors.DeadlineExceeded.reason, []).append(errors.DeadlineExceeded)
    return out


def client_classes() -> dict[str, list[type]]:
    out: dict[str, list[type]] = {}
    todo = list(lc.LiyaError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "REASON" in vars(cls):
            out.setdefault(cls.REASON, []).append(cls)
    return out


def test_every_value_of_the_enum_documents_its_code():
    codes = documented_codes()
    assert set(codes) == ENUM_REASONS
    assert set(codes.values()) <= set(code_pb2.Code.keys())


def test_every_reason_has_exactly_one_server_class_and_nothing_else():
    found = server_classes()
    assert set(found) == ENUM_REASONS
    several = {reason: classes for reason, classes in found.items() if len(classes) != 1}
    assert several == {}


def test_server_classes_answer_with_the_documented_code():
    codes = documented_codes()
    answered = {
        reason: code_pb2.Code.Name(classes[0].code) for reason, classes in server_classes().items()
    }
    assert answered == codes


def test_classes_without_a_reason_of_their_own_answer_as_their_parent():
    timed_out = errors.ProviderTimedOut("late", provider="openai")
    assert (timed_out.reason, status.code_for(timed_out)) == (
        "BYOK_ENDPOINT_UNREACHABLE",
        code_pb2.UNAVAILABLE,
    )
    bad = errors.InvalidArgument("bad")
    assert status.code_for(bad) == code_pb2.INVALID_ARGUMENT


def test_a_server_class_with_a_reason_outside_the_enum_is_refused():
    with pytest.raises(TypeError, match="'NOT_A_REASON' is not a value of ErrorReason"):

        class Stray(errors.LiyaError):
            reason = "NOT_A_REASON"


def test_client_classes_cover_exactly_the_enum_and_follow_the_naming_rule():
    found = client_classes()
    assert set(found) == ENUM_REASONS
    assert {reason: len(classes) for reason, classes in found.items()} == dict.fromkeys(
        ENUM_REASONS, 1
    )
    assert {reason: classes[0].__name__ for reason, classes in found.items()} == {
        reason: lc.class_name(reason) for reason in ENUM_REASONS
    }
    assert lc.class_name("BYOK_AUTH_FAILED") == "ByokAuthFailed"
    assert dict(lc.reason_classes()) == {r: c[0] for r, c in found.items()}
    for reason in ENUM_REASONS:
        assert getattr(lc, lc.class_name(reason)).REASON == reason


def test_a_client_class_off_the_rule_is_refused():
    with pytest.raises(TypeError, match="in a class named ByokAuthFailed"):

        class AuthProblem(lc.LiyaError):
            REASON = "BYOK_AUTH_FAILED"

    with pytest.raises(TypeError, match="already has the class ByokAuthFailed"):

        class ByokAuthFailed(lc.LiyaError):
            REASON = "BYOK_AUTH_FAILED"


def decoded(st: grpc.Status) -> lc.LiyaError:
    """What the client makes of a status the server builds."""

    class Call(grpc.RpcError):
        def code(self):
            return st.code

        def details(self):
            return st.details

        def trailing_metadata(self):
            return st.trailing_metadata

    return lc.error_from_rpc(Call())


@pytest.mark.parametrize(
    ("exc", "client_cls", "code"),
    [
        (
            errors.BudgetExceeded("over budget"),
            lc.BudgetExceeded,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (
            errors.ConcurrencyLimitExceeded("too many in flight", retry_after=0.25),
            lc.ConcurrencyLimitExceeded,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (errors.ServerOverloaded("full"), lc.ServerOverloaded, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_new_reasons_answer_with_their_code_and_decode_to_their_class(exc, client_cls, code):
    err = decoded(status.error_status(exc, "req-1"))
    assert type(err) is client_cls
    assert (err.code, err.reason, err.message, err.request_id) == (
        code,
        exc.reason,
        exc.message,
        "req-1",
    )
    assert err.retry_delay == (0.25 if isinstance(exc, errors.ConcurrencyLimitExceeded) else None)


def test_internal_and_deadline_answers_take_reason_and_code_from_their_class():
    internal = decoded(status.internal_status("req-2"))
    assert type(internal) is lc.Internal
    assert (internal.code, internal.reason, internal.request_id) == (
        grpc.StatusCode.INTERNAL,
        errors.InternalError.reason,
        "req-2",
    )
    assert internal.message == "internal error; quote request id req-2 to the operator"
    late = decoded(status.deadline_status("req-3"))
    assert type(late) is lc.DeadlineExceeded
    assert (late.code, late.reason, late.message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the call's deadline ran out before the provider answered",
    )


# --------------------------------------------------- at most 20 violations


def metadata_size(err: grpc.aio.AioRpcError) -> int:
    entries = list(err.trailing_metadata() or ()) + list(err.initial_metadata() or ())
    return sum(len(k) + len(v) + 32 for k, v in entries)


def bad_request(err: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    st = rpc_status.from_call(err)
    (packed,) = [d for d in st.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    out = error_details_pb2.BadRequest()
    packed.Unpack(out)
    return list(out.field_violations)


async def test_sixty_unknown_intents_give_twenty_violations_the_last_counting_the_rest(servers):
    _, stubs = await servers.start()
    intents = {f"intent_{i}": "gpt-4o" for i in range(60)}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.config.UpdateConfig(
            cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(overrides=intents)),
            metadata=auth("t"),
        )
    err = caught.value
    assert details_of(err).reason == "INVALID_CONFIG"
    shown = bad_request(err)
    assert len(shown) == 20
    assert all(v.field.startswith("model_config.overrides.intent_") for v in shown)
    assert len({v.field for v in shown}) == 20
    plain = shown[0].description
    assert [v.description for v in shown] == [plain] * 19 + [
        plain + " (... and 40 more violations not shown)"
    ]
    assert metadata_size(err) <= METADATA_LIMIT


async def test_a_thousand_unknown_mask_paths_fit_the_metadata_limit(servers):
    _, stubs = await servers.start()
    paths = [f"model_config.no_such_field_{i:04d}" for i in range(1000)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.config.UpdateConfig(
            cpb.UpdateConfigRequest(update_mask=field_mask_pb2.FieldMask(paths=paths)),
            metadata=auth("t"),
        )
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    shown = bad_request(err)
    assert len(shown) == 20
    assert shown[-1].description.endswith(" (... and 980 more violations not shown)")
    assert metadata_size(err) <= METADATA_LIMIT


@pytest.mark.parametrize(
    ("count", "suffix"), [(20, ""), (21, " (... and 1 more violation not shown)")]
)
async def test_the_cap_counts_exactly(servers, count, suffix):
    _, stubs = await servers.start()
    intents = {f"intent_{i}": "gpt-4o" for i in range(count)}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.config.UpdateConfig(
            cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(overrides=intents)),
            metadata=auth("t"),
        )
    shown = bad_request(caught.value)
    # Every unknown intent gets the same description; only the 20th may add the count.
    plain = shown[0].description
    assert plain.startswith("unknown intent; known intents: ")
    assert [v.description for v in shown] == [plain] * 19 + [plain + suffix]


def test_the_operations_guide_lists_every_reason_with_its_code():
    """docs/operations.md explains each reason to operators; its table must
    name exactly the enum's reasons, each with the code the enum documents."""
    guide = (PROTO.parents[4] / "docs" / "operations.md").read_text()
    section = guide.split("## Error reasons", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)? \| ([A-Z_]+) \|", section, re.M)
    listed = {}
    for first, second, code in rows:
        for reason in filter(None, (first, second)):
            listed[reason] = code
    assert set(listed) == ENUM_REASONS
    assert listed == {r: documented_codes()[r] for r in ENUM_REASONS}
