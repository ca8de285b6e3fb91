/**
 * The public contract of tollgate: types for sibling Workers and outside programs, the
 * capnweb client, and the error-code helpers. Nothing here imports `src/` at run time.
 */
export type * from "./rate-limits";
export type * from "./credits";
export type * from "./path-stats";
export type * from "./gateway";
export type * from "./admin";
export type * from "./backup";
export type * from "./adaptive";
export type * from "./protection";
export type * from "./retention";
export type * from "./metrics";
export type * from "./alerts";
export { ERROR_CODES, errorCodeOf, hasErrorCode, type ErrorCode, type ErrorDetail, type ServiceErrorLike } from "./errors";
export { connect, type ConnectOptions, type Transport } from "./client";
export { RateLimitGuard, type GuardedDecision, type RateLimitGuardOptions, type Unavailable } from "./rate-limit-guard";
export {
  estimateOutputTokens,
  meterLlmResponse,
  meterLlmStream,
  SseParser,
  utf8Length,
  type Delivered,
  type LlmFormat,
  type MeterEnd,
  type MeteredUsage,
  type MeterOptions,
  type ReportedUsage,
  type SseEvent,
} from "./llm-meter";
export { estimateLlmRequest, type LlmEstimateOptions, type LlmRequestEstimate } from "./llm-quote";
