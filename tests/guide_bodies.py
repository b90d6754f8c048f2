"""The public BYOK guide's JSON bodies, shared by the tests that send them."""

# Copied character for character from the guide (spec/byok-setup-guide.txt).
OPENAI_BODY = """{
  "provider_config": {
    "mode": "byok",
    "openai": {
      "api_key": "sk-...",
      "default_model": "gpt-4o"
    }
  }
}"""

ANTHROPIC_BODY = """{
  "provider_config": {
    "mode": "byok",
    "anthropic": {
      "api_key": "sk-ant-...",
      "default_model": "claude-sonnet-4-6"
    }
  }
}"""

AZURE_BODY = """{
  "provider_config": {
    "mode": "byok",
    "azure": {
      "api_key": "your-azure-key",
      "endpoint": "https://your-resource.openai.azure.com",
      "deployment_name": "gpt-4o",
      "api_version": "2024-02-15-preview"
    }
  }
}"""

MODEL_CONFIG_BODY = """{
  "modelConfig": {
    "strategy": "cost-optimised",
    "overrides": {
      "resume_analysis": "gpt-4o",
      "general_chat": "gpt-4o-mini",
      "mock_interview": "claude-sonnet-4-6"
    },
    "cost_limit_usd_per_request": 0.05
  }
}"""

MANAGED_BODY = """{
  "provider_config": {
    "mode": "managed"
  }
}"""

BODIES = {
    "openai": OPENAI_BODY,
    "anthropic": ANTHROPIC_BODY,
    "azure": AZURE_BODY,
    "model_config": MODEL_CONFIG_BODY,
    "managed": MANAGED_BODY,
}
