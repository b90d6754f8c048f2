/**
 * `@liya/engine-client`: the generated messages and services of
 * `liya.engine.v1` (protoc-gen-es), a thin gRPC client and an error decoder.
 */
export { createLiyaClient, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { LiyaClient, LiyaClientOptions, TokenProvider } from "./client.js";
export { errorDetails, ERROR_DOMAIN } from "./errors.js";
export type { LiyaErrorDetails } from "./errors.js";
export { Code, ConnectError } from "@connectrpc/connect";
export * from "./gen/liya/engine/v1/config_service_pb.js";
export * from "./gen/liya/engine/v1/inference_service_pb.js";
export * from "./gen/liya/engine/v1/error_reason_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
