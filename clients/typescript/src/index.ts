/**
 * `@liya/engine-client`: the generated messages and services of
 * `liya.engine.v1` (protoc-gen-es), a thin gRPC client and an error decoder.
 */
export { createLiyaClient, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { LiyaClient, LiyaClientOptions, TokenProvider } from "./client.js";
export { errorDetails, ERROR_DOMAIN } from "./errors.js";
export type { LiyaErrorDetails } from "./errors.js";
export { Code, ConnectError } from "@connectrpc/connect";
// Every generated module (the API's files and google/rpc), listed by make gen.
export * from "./gen/index.js";
