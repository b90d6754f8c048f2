"""``liya.engine.v1.UsageService``: protos in, domain calls, protos out."""

from __future__ import annotations

from liya.engine.v1 import usage_service_pb2 as pb
from liya.engine.v1 import usage_service_pb2_grpc as pb_grpc
from liya_engine.api.calls import current_call
from liya_engine.usage.listing import UsageReports
from liya_engine.usage.ports import DailyUsage


def _row(r: DailyUsage) -> pb.DailyUsage:
    return pb.DailyUsage(
        date=r.day.isoformat(),
        provider=r.provider,
        model=r.model,
        intent=r.intent,
        mode=r.mode,
        calls=r.calls,
        failed_calls=r.failed_calls,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        cost_usd=r.cost_usd,
    )


class UsageServicer(pb_grpc.UsageServiceServicer):
    def __init__(self, reports: UsageReports) -> None:
        self._reports = reports

    async def ListDailyUsage(
        self, request: pb.ListDailyUsageRequest, context
    ) -> pb.ListDailyUsageResponse:
        page = await self._reports.list_daily_usage(
            current_call().identity.tenant_id,
            request.start_date,
            request.end_date,
            request.page_size,
            request.page_token,
        )
        response = pb.ListDailyUsageResponse(
            daily_usage=[_row(r) for r in page.rows],
            next_page_token=page.next_page_token,
            month_to_date_cost_usd=page.month_to_date_cost_usd,
        )
        if page.monthly_budget_usd is not None:
            response.monthly_budget_usd = page.monthly_budget_usd
        return response
