/**
 * The TypeScript client against the real server (tests/serve_for_node.py:
 * the server on a free port with a fresh SQLite file, and the fake providers,
 * which speak OpenAI's wire format as OpenAI does).
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import path from "node:path";

import { fromJsonString } from "@bufbuild/protobuf";

import {
  Code,
  ConnectError,
  ErrorReason,
  UpdateConfigRequestSchema,
  createLiyaClient,
  errorDetails,
  type LiyaClient,
} from "../src/index.js";

interface Harness {
  address: string;
  fake: string;
  tokens: Record<string, string>;
  bodies: Record<string, string>;
}

// dist/test/ -> the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const PYTHON = process.env.LIYA_ENGINE_PYTHON ?? path.join(ROOT, ".venv/bin/python");

let child: ChildProcess;
let harness: Harness;

before(async () => {
  child = spawn(PYTHON, [path.join(ROOT, "tests/serve_for_node.py")], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`server harness exited with ${code}`)));
  });
  harness = JSON.parse(first) as Harness;
});

after(async () => {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.stdin!.end();
  await exited;
});

function client(tenant: string, timeoutMs?: number): LiyaClient {
  return createLiyaClient({
    baseUrl: harness.address,
    token: () => harness.tokens[tenant]!,
    timeoutMs,
  });
}

/** Queue a failure on the fake OpenAI (its /_control API). */
async function failOpenAI(kind: string, options: Record<string, unknown> = {}): Promise<void> {
  const answer = await fetch(`${harness.fake}/_control/fail`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ provider: "openai", kind, times: 1, ...options }),
  });
  assert.equal(answer.status, 200, await answer.text());
}

/** The guide's request body, parsed as protobuf JSON (both name spellings). */
function guideRequest(name: string) {
  return fromJsonString(UpdateConfigRequestSchema, harness.bodies[name]!);
}

async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    return err;
  }
  assert.fail("the call succeeded");
}

const HELLO = { intent: "general_chat", messages: [{ role: "user", content: "Hello there" }] };

describe("a tenant configured with the guide's bodies", () => {
  it("UpdateConfig takes the guide's mixed-case body whole", async () => {
    const api = client("ts-guide");
    const openai = await api.config.updateConfig(guideRequest("openai"));
    assert.equal(openai.config?.mode, "byok");
    assert.equal(openai.config?.servingProvider, "openai");
    // `modelConfig` (JSON name) and `cost_limit_usd_per_request` (proto name)
    // in one body: protobuf-es reads both; a plain JSON loader drops one.
    const models = await api.config.updateConfig(guideRequest("model_config"));
    const modelConfig = models.config?.modelConfig;
    assert.equal(modelConfig?.strategy, "cost-optimised");
    assert.equal(modelConfig?.costLimitUsdPerRequest, 0.05);
    assert.deepEqual(modelConfig?.overrides, {
      resume_analysis: "gpt-4o",
      general_chat: "gpt-4o-mini",
      mock_interview: "claude-sonnet-4-6",
    });
  });

  it("GetMaskedConfig shows the key masked and the model config", async () => {
    const { config } = await client("ts-guide").config.getMaskedConfig({});
    assert.equal(config?.mode, "byok");
    assert.equal(config?.openai?.configured, true);
    assert.equal(config?.openai?.defaultModel, "gpt-4o");
    assert.match(config?.openai?.apiKeyPreview ?? "", /^sk-/);
    assert.equal(config?.anthropic?.configured, false);
    assert.equal(config?.modelConfig?.costLimitUsdPerRequest, 0.05);
    assert.match(config?.etag ?? "", /.+/);
  });

  it("Complete answers through OpenAI with the intent's override", async () => {
    const reply = await client("ts-guide").inference.complete(HELLO);
    assert.equal(reply.message?.role, "assistant");
    assert.ok((reply.message?.content ?? "").length > 0);
    assert.equal(reply.usage?.provider, "openai");
    assert.equal(reply.usage?.model, "gpt-4o-mini");
    assert.equal(reply.usage?.mode, "byok");
    assert.ok((reply.usage?.inputTokens ?? 0) > 0);
    assert.equal(reply.usage?.totalTokens, reply.usage!.inputTokens + reply.usage!.outputTokens);
    assert.match(reply.usage?.requestId ?? "", /.+/);
  });
});

describe("errors decoded from the status details", () => {
  before(async () => {
    await client("ts-errors").config.updateConfig(guideRequest("openai"));
  });

  it("BYOK_AUTH_FAILED from the provider's 401: reason, metadata, no RetryInfo", async () => {
    await failOpenAI("auth");
    const err = await rejection(client("ts-errors").inference.complete(HELLO));
    const details = errorDetails(err);
    assert.equal(details.code, Code.FailedPrecondition);
    assert.equal(details.reason, ErrorReason.BYOK_AUTH_FAILED);
    assert.equal(details.reasonName, "BYOK_AUTH_FAILED");
    assert.equal(details.domain, "liyaengine.ai");
    assert.equal(details.metadata.provider, "openai");
    assert.equal(details.metadata.upstream_status, "401");
    assert.match(details.metadata.request_id ?? "", /.+/);
    assert.equal(details.retryDelayMs, undefined);
    assert.equal(details.badRequest, undefined);
    assert.ok(!details.message.includes("sk-..."), details.message);
  });

  it("BYOK_QUOTA_EXCEEDED from a 429: RetryInfo and QuotaFailure", async () => {
    await failOpenAI("rate_limit", { retry_after: 3 });
    const details = errorDetails(await rejection(client("ts-errors").inference.complete(HELLO)));
    assert.equal(details.code, Code.ResourceExhausted);
    assert.equal(details.reason, ErrorReason.BYOK_QUOTA_EXCEEDED);
    assert.equal(details.retryDelayMs, 3000);
    assert.deepEqual(
      details.quotaFailure?.violations.map((v) => v.subject),
      ["provider:openai"],
    );
  });

  it("INVALID_CONFIG: BadRequest names the field", async () => {
    const request = guideRequest("model_config");
    request.modelConfig!.strategy = "cheapest-please";
    const details = errorDetails(await rejection(client("ts-errors").config.updateConfig(request)));
    assert.equal(details.code, Code.InvalidArgument);
    assert.equal(details.reason, ErrorReason.INVALID_CONFIG);
    assert.deepEqual(
      details.badRequest?.fieldViolations.map((v) => v.field),
      ["model_config.strategy"],
    );
  });

  it("a missing token is INVALID_TOKEN", async () => {
    const api = createLiyaClient({ baseUrl: harness.address, token: () => "" });
    const details = errorDetails(await rejection(api.config.getMaskedConfig({})));
    assert.equal(details.code, Code.Unauthenticated);
    assert.equal(details.reason, ErrorReason.INVALID_TOKEN);
  });
});

describe("the client's token provider and deadline", () => {
  it("asks the token provider on every call", async () => {
    let asked = 0;
    const api = createLiyaClient({
      baseUrl: harness.address,
      token: async () => {
        asked += 1;
        return harness.tokens["ts-deadline"]!;
      },
    });
    await api.config.getMaskedConfig({});
    await api.config.getMaskedConfig({});
    assert.equal(asked, 2);
  });

  it("timeoutMs bounds the call while the provider is slow", async () => {
    const api = client("ts-deadline", 500);
    await api.config.updateConfig(guideRequest("openai"));
    await failOpenAI("slow", { delay: 5 });
    const started = Date.now();
    const err = await rejection(api.inference.complete(HELLO));
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  });
});
