/**
 * What a failed call says, decoded from its `google.rpc.Status` details
 * (`grpc-status-details-bin`): the one ErrorInfo (reason, metadata) and, where
 * they apply, RetryInfo, BadRequest and QuotaFailure.
 */
import { ConnectError, Code } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
  type BadRequest,
  type QuotaFailure,
} from "./gen/google/rpc/error_details_pb.js";
import { ErrorReason } from "./gen/liya/engine/v1/error_reason_pb.js";

/** The domain of every ErrorInfo the service sends. */
export const ERROR_DOMAIN = "liyaengine.ai";

export interface LiyaErrorDetails {
  /** The gRPC status code. */
  code: Code;
  /** The status message, without connect's `[code]` prefix. */
  message: string;
  /** `ErrorInfo.reason` as the enum (ERROR_REASON_UNSPECIFIED when absent or unknown to this build). */
  reason: ErrorReason;
  /** `ErrorInfo.reason` as sent, e.g. `BYOK_AUTH_FAILED` (empty when absent). */
  reasonName: string;
  /** `ErrorInfo.domain` (`liyaengine.ai`). */
  domain: string;
  /** `ErrorInfo.metadata`: `request_id` always, `provider`, `upstream_status`, ... */
  metadata: Record<string, string>;
  /** How long to wait before retrying, when the service says (RetryInfo). */
  retryDelayMs?: number;
  /** The field violations of an INVALID_CONFIG / INVALID_REQUEST. */
  badRequest?: BadRequest;
  /** What quota ran out (BYOK_QUOTA_EXCEEDED, BUDGET_EXCEEDED, ...). */
  quotaFailure?: QuotaFailure;
}

function durationMs(duration: Duration | undefined): number | undefined {
  if (duration === undefined) return undefined;
  return Number(duration.seconds) * 1000 + Math.round(duration.nanos / 1e6);
}

function reasonOf(name: string): ErrorReason {
  const value = (ErrorReason as unknown as Record<string, number | undefined>)[name];
  return typeof value === "number" ? value : ErrorReason.ERROR_REASON_UNSPECIFIED;
}

/**
 * Decodes the details of an error thrown by a call of `createLiyaClient`
 * (any other error is wrapped by `ConnectError.from` first, e.g. as Code.Unknown).
 */
export function errorDetails(error: unknown): LiyaErrorDetails {
  const err = ConnectError.from(error);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const retry = err.findDetails(RetryInfoSchema)[0];
  const details: LiyaErrorDetails = {
    code: err.code,
    message: err.rawMessage,
    reason: reasonOf(info?.reason ?? ""),
    reasonName: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: { ...(info?.metadata ?? {}) },
  };
  const delay = durationMs(retry?.retryDelay);
  if (delay !== undefined) details.retryDelayMs = delay;
  const badRequest = err.findDetails(BadRequestSchema)[0];
  if (badRequest !== undefined) details.badRequest = badRequest;
  const quotaFailure = err.findDetails(QuotaFailureSchema)[0];
  if (quotaFailure !== undefined) details.quotaFailure = quotaFailure;
  return details;
}
