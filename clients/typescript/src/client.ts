/**
 * A thin client for the Liya Engine over gRPC: one HTTP/2 connection, a bearer
 * token from a provider you supply on every call, and a default deadline.
 */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { ConfigService } from "./gen/liya/engine/v1/config_service_pb.js";
import { InferenceService } from "./gen/liya/engine/v1/inference_service_pb.js";

/** Returns the bearer JWT for the next call (called once per call, so it may refresh). */
export type TokenProvider = () => string | Promise<string>;

export interface LiyaClientOptions {
  /** The server, e.g. `http://127.0.0.1:50051` (plaintext) or `https://liya.internal:443`. */
  baseUrl: string;
  /** Supplies the `authorization: Bearer <jwt>` of each call. */
  token: TokenProvider;
  /**
   * Deadline of each call in milliseconds, sent as `grpc-timeout` (the server
   * bounds its provider call by it). A call may pass its own `timeoutMs`.
   * Default 30000.
   */
  timeoutMs?: number;
}

export interface LiyaClient {
  readonly config: Client<typeof ConfigService>;
  readonly inference: Client<typeof InferenceService>;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

/** A client of both services of `liya.engine.v1` on one gRPC transport. */
export function createLiyaClient(options: LiyaClientOptions): LiyaClient {
  const bearer: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${await options.token()}`);
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    interceptors: [bearer],
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  return {
    config: createClient(ConfigService, transport),
    inference: createClient(InferenceService, transport),
  };
}
