"""``liya.engine.v1.ConfigService``: protos in, domain calls, protos out."""

from __future__ import annotations

from liya.engine.v1 import config_service_pb2 as pb
from liya.engine.v1 import config_service_pb2_grpc as pb_grpc
from liya_engine.api import convert
from liya_engine.api.calls import current_call
from liya_engine.api.health import with_health
from liya_engine.api.inference_servicer import usage_proto
from liya_engine.config.health_view import HealthView
from liya_engine.config.service import ConfigService
from liya_engine.inference.service import InferenceService
from liya_engine.inference.tenants import TenantCache


class ConfigServicer(pb_grpc.ConfigServiceServicer):
    def __init__(
        self,
        configs: ConfigService,
        inference: InferenceService,
        tenants: TenantCache,
        health: HealthView,
    ) -> None:
        self._tenants = tenants
        self._health = health
        self._configs = configs
        self._inference = inference

    def _masked(self, cfg) -> pb.MaskedConfig:
        return convert.masked_config(cfg, managed_providers=self._inference.managed_providers)

    async def UpdateConfig(
        self, request: pb.UpdateConfigRequest, context
    ) -> pb.UpdateConfigResponse:
        call = current_call()
        changes = convert.changes_from_request(request)
        result = await self._configs.update(
            call.identity,
            call.request_id,
            changes,
            etag=request.etag,
            validate_only=request.validate_only,
            verify=request.verify,
            deadline=context.time_remaining(),
        )
        # Under validate_only the health shown is the stored key's: a test of
        # other credentials does not change it.
        shown = self._masked(result.config)
        if not request.validate_only:
            shown = with_health(shown, await self._health.for_config(result.config))
        return pb.UpdateConfigResponse(config=shown, warnings=result.warnings)

    async def GetMaskedConfig(
        self, request: pb.GetMaskedConfigRequest, context
    ) -> pb.GetMaskedConfigResponse:
        # Served from the tenant cache: fresh after a change through this
        # replica, at most LIYA_CONFIG_CACHE_TTL_SECONDS old after one elsewhere.
        tenant = await self._tenants.get(current_call().identity.tenant_id)
        if tenant.shown is None:
            tenant.shown = pb.GetMaskedConfigResponse(config=self._masked(tenant.config))
        # Health is read apart (its own short-lived cache): a health write
        # never invalidates the config cached above.
        records = await self._health.for_config(tenant.config)
        if not records:
            return tenant.shown
        # A dashboard polls while nothing changes: the reply built for the same
        # health is kept with this config version, and sent again as it is.
        seen = tuple(records.items())
        kept = tenant.shown_with_health
        if kept is not None and kept[0] == seen:
            return kept[1]
        shown = pb.GetMaskedConfigResponse(config=with_health(tenant.shown.config, records))
        tenant.shown_with_health = (seen, shown)
        return shown

    async def VerifyConfig(
        self, request: pb.VerifyConfigRequest, context
    ) -> pb.VerifyConfigResponse:
        call = current_call()
        result = await self._inference.verify(
            call.identity.tenant_id,
            call.request_id,
            intent=request.intent,
            deadline=context.time_remaining(),
        )
        response = pb.VerifyConfigResponse(
            provider=result.provider, model=result.model, mode=result.mode
        )
        response.latency.FromMilliseconds(int(result.latency_seconds * 1000))
        if result.usage is not None:
            response.usage.CopyFrom(usage_proto(result.usage))
        return response

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context
    ) -> pb.ListAuditEntriesResponse:
        entries, token = await self._configs.list_audit(
            current_call().identity.tenant_id, request.page_size, request.page_token
        )
        return pb.ListAuditEntriesResponse(
            audit_entries=[convert.audit_entry(e) for e in entries], next_page_token=token
        )
