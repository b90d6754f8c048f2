"""Azure OpenAI's wording of failures: its endpoint and deployment are the tenant's.

Unlike OpenAI and Anthropic, whose base URLs are the operator's, an Azure
endpoint, deployment and API version are tenant input, so most fixes point
at the Azure portal (Keys and Endpoint, Deployments).
"""

from __future__ import annotations

from liya_engine.providers import facts
from liya_engine.providers.failures import Failure
from liya_engine.providers.wording import Call, Wording


class AzureWording(Wording):
    """``Wording`` for Azure OpenAI."""

    def __init__(self) -> None:
        super().__init__(facts.AZURE)

    def key_fix(self) -> str:
        return (
            "check the key and the endpoint in the Azure portal (Keys and Endpoint) and update them"
        )

    def model_not_found(self, failure: Failure, call: Call) -> str:
        # Azure's 404 names a deployment: the tenant's name for it, and an API
        # version that must exist for the resource.
        at = f" at {call.host}" if call.host else ""
        version = f" and that api_version '{call.api_version}' exists" if call.api_version else ""
        return (
            f"{self.label} has no deployment '{call.model}'{at} "
            f"({failure.status or 'in-stream'}): check that deployment_name matches the "
            f"deployment in the Azure portal exactly{version}.{self.said(call)}"
        )

    def redirect_fix(self) -> str:
        return "set the endpoint to the resource's own URL (Keys and Endpoint in the portal)"

    def timeout_fix(self) -> str:
        return "check that the endpoint is right and the Azure resource is running, then retry"

    def connect_timeout_fix(self) -> str:
        return "Verify the endpoint in the Azure portal and that the resource is running."

    def unreachable_fix(self) -> str:
        return (
            "Verify the endpoint in the Azure portal (Keys and Endpoint) and that the "
            "resource is running, then update it"
        )
