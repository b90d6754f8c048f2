from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListDailyUsageRequest(_message.Message):
    __slots__ = ("start_date", "end_date", "page_size", "page_token")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    page_size: int
    page_token: str
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDailyUsageResponse(_message.Message):
    __slots__ = ("daily_usage", "next_page_token", "month_to_date_cost_usd", "monthly_budget_usd")
    DAILY_USAGE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MONTH_TO_DATE_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    daily_usage: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    next_page_token: str
    month_to_date_cost_usd: float
    monthly_budget_usd: float
    def __init__(self, daily_usage: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., month_to_date_cost_usd: _Optional[float] = ..., monthly_budget_usd: _Optional[float] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("date", "provider", "model", "intent", "mode", "calls", "failed_calls", "input_tokens", "output_tokens", "cost_usd")
    DATE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILED_CALLS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    date: str
    provider: str
    model: str
    intent: str
    mode: str
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, date: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., intent: _Optional[str] = ..., mode: _Optional[str] = ..., calls: _Optional[int] = ..., failed_calls: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...
