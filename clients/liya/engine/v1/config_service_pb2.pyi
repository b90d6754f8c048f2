import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from liya.engine.v1 import inference_service_pb2 as _inference_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpdateConfigRequest(_message.Message):
    __slots__ = ("provider_config", "model_config", "update_mask", "etag", "validate_only", "verify")
    PROVIDER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    MODEL_CONFIG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    provider_config: ProviderConfig
    model_config: ModelConfig
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    validate_only: bool
    verify: bool
    def __init__(self, provider_config: _Optional[_Union[ProviderConfig, _Mapping]] = ..., model_config: _Optional[_Union[ModelConfig, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ..., validate_only: _Optional[bool] = ..., verify: _Optional[bool] = ...) -> None: ...

class ProviderConfig(_message.Message):
    __slots__ = ("mode", "openai", "anthropic", "azure")
    MODE_FIELD_NUMBER: _ClassVar[int]
    OPENAI_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_FIELD_NUMBER: _ClassVar[int]
    AZURE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    openai: OpenAIConfig
    anthropic: AnthropicConfig
    azure: AzureOpenAIConfig
    def __init__(self, mode: _Optional[str] = ..., openai: _Optional[_Union[OpenAIConfig, _Mapping]] = ..., anthropic: _Optional[_Union[AnthropicConfig, _Mapping]] = ..., azure: _Optional[_Union[AzureOpenAIConfig, _Mapping]] = ...) -> None: ...

class OpenAIConfig(_message.Message):
    __slots__ = ("api_key", "default_model")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    default_model: str
    def __init__(self, api_key: _Optional[str] = ..., default_model: _Optional[str] = ...) -> None: ...

class AnthropicConfig(_message.Message):
    __slots__ = ("api_key", "default_model")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    default_model: str
    def __init__(self, api_key: _Optional[str] = ..., default_model: _Optional[str] = ...) -> None: ...

class AzureOpenAIConfig(_message.Message):
    __slots__ = ("api_key", "endpoint", "deployment_name", "api_version", "model")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    endpoint: str
    deployment_name: str
    api_version: str
    model: str
    def __init__(self, api_key: _Optional[str] = ..., endpoint: _Optional[str] = ..., deployment_name: _Optional[str] = ..., api_version: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ModelConfig(_message.Message):
    __slots__ = ("strategy", "overrides", "cost_limit_usd_per_request", "prices", "monthly_budget_usd")
    class OverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class PricesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ModelPrice
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ModelPrice, _Mapping]] = ...) -> None: ...
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    COST_LIMIT_USD_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    overrides: _containers.ScalarMap[str, str]
    cost_limit_usd_per_request: float
    prices: _containers.MessageMap[str, ModelPrice]
    monthly_budget_usd: float
    def __init__(self, strategy: _Optional[str] = ..., overrides: _Optional[_Mapping[str, str]] = ..., cost_limit_usd_per_request: _Optional[float] = ..., prices: _Optional[_Mapping[str, ModelPrice]] = ..., monthly_budget_usd: _Optional[float] = ...) -> None: ...

class ModelPrice(_message.Message):
    __slots__ = ("input_usd_per_million", "output_usd_per_million")
    INPUT_USD_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MILLION_FIELD_NUMBER: _ClassVar[int]
    input_usd_per_million: float
    output_usd_per_million: float
    def __init__(self, input_usd_per_million: _Optional[float] = ..., output_usd_per_million: _Optional[float] = ...) -> None: ...

class UpdateConfigResponse(_message.Message):
    __slots__ = ("config", "warnings")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    config: MaskedConfig
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, config: _Optional[_Union[MaskedConfig, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class GetMaskedConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMaskedConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: MaskedConfig
    def __init__(self, config: _Optional[_Union[MaskedConfig, _Mapping]] = ...) -> None: ...

class MaskedConfig(_message.Message):
    __slots__ = ("mode", "serving_provider", "openai", "anthropic", "azure", "model_config", "etag", "update_time")
    MODE_FIELD_NUMBER: _ClassVar[int]
    SERVING_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    OPENAI_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_FIELD_NUMBER: _ClassVar[int]
    AZURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    mode: str
    serving_provider: str
    openai: MaskedOpenAIConfig
    anthropic: MaskedAnthropicConfig
    azure: MaskedAzureOpenAIConfig
    model_config: ModelConfig
    etag: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, mode: _Optional[str] = ..., serving_provider: _Optional[str] = ..., openai: _Optional[_Union[MaskedOpenAIConfig, _Mapping]] = ..., anthropic: _Optional[_Union[MaskedAnthropicConfig, _Mapping]] = ..., azure: _Optional[_Union[MaskedAzureOpenAIConfig, _Mapping]] = ..., model_config: _Optional[_Union[ModelConfig, _Mapping]] = ..., etag: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MaskedOpenAIConfig(_message.Message):
    __slots__ = ("configured", "api_key_preview", "default_model", "health")
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    API_KEY_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    configured: bool
    api_key_preview: str
    default_model: str
    health: ProviderHealth
    def __init__(self, configured: _Optional[bool] = ..., api_key_preview: _Optional[str] = ..., default_model: _Optional[str] = ..., health: _Optional[_Union[ProviderHealth, _Mapping]] = ...) -> None: ...

class MaskedAnthropicConfig(_message.Message):
    __slots__ = ("configured", "api_key_preview", "default_model", "health")
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    API_KEY_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    configured: bool
    api_key_preview: str
    default_model: str
    health: ProviderHealth
    def __init__(self, configured: _Optional[bool] = ..., api_key_preview: _Optional[str] = ..., default_model: _Optional[str] = ..., health: _Optional[_Union[ProviderHealth, _Mapping]] = ...) -> None: ...

class MaskedAzureOpenAIConfig(_message.Message):
    __slots__ = ("configured", "api_key_preview", "endpoint", "deployment_name", "api_version", "model", "health")
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    API_KEY_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    configured: bool
    api_key_preview: str
    endpoint: str
    deployment_name: str
    api_version: str
    model: str
    health: ProviderHealth
    def __init__(self, configured: _Optional[bool] = ..., api_key_preview: _Optional[str] = ..., endpoint: _Optional[str] = ..., deployment_name: _Optional[str] = ..., api_version: _Optional[str] = ..., model: _Optional[str] = ..., health: _Optional[_Union[ProviderHealth, _Mapping]] = ...) -> None: ...

class ProviderHealth(_message.Message):
    __slots__ = ("state", "last_success_time", "last_failure_time", "last_failure_reason", "last_failure_message", "key_set_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KEY_SET_TIME_FIELD_NUMBER: _ClassVar[int]
    state: str
    last_success_time: _timestamp_pb2.Timestamp
    last_failure_time: _timestamp_pb2.Timestamp
    last_failure_reason: str
    last_failure_message: str
    key_set_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[str] = ..., last_success_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_failure_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_failure_reason: _Optional[str] = ..., last_failure_message: _Optional[str] = ..., key_set_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyConfigRequest(_message.Message):
    __slots__ = ("intent",)
    INTENT_FIELD_NUMBER: _ClassVar[int]
    intent: str
    def __init__(self, intent: _Optional[str] = ...) -> None: ...

class VerifyConfigResponse(_message.Message):
    __slots__ = ("provider", "model", "mode", "latency", "usage")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    mode: str
    latency: _duration_pb2.Duration
    usage: _inference_service_pb2.Usage
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., usage: _Optional[_Union[_inference_service_pb2.Usage, _Mapping]] = ...) -> None: ...

class ListAuditEntriesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEntriesResponse(_message.Message):
    __slots__ = ("audit_entries", "next_page_token")
    AUDIT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audit_entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, audit_entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "create_time", "actor", "request_id", "changed_paths", "mode_before", "mode_after")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_PATHS_FIELD_NUMBER: _ClassVar[int]
    MODE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MODE_AFTER_FIELD_NUMBER: _ClassVar[int]
    id: str
    create_time: _timestamp_pb2.Timestamp
    actor: str
    request_id: str
    changed_paths: _containers.RepeatedScalarFieldContainer[str]
    mode_before: str
    mode_after: str
    def __init__(self, id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., request_id: _Optional[str] = ..., changed_paths: _Optional[_Iterable[str]] = ..., mode_before: _Optional[str] = ..., mode_after: _Optional[str] = ...) -> None: ...
