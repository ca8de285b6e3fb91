import type { Decision } from "../../../rpc/rate-limits";

/**
 * Response headers a gateway can copy verbatim:
 * - `RateLimit-Policy` and `RateLimit` as in draft-ietf-httpapi-ratelimit-headers (one list
 *   member per enforced rule: `"name";q=<limit>;w=<window s>` and `"name";r=<remaining>;t=<reset s>`),
 * - `Retry-After` in whole seconds, rounded up, when denied,
 * - the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds)
 *   of the tightest rule, which many clients still read.
 */
export function rateLimitHeaders(decision: Decision, nowMs: number): Record<string, string> {
  const enforced = decision.rules.filter((rule) => !rule.shadow);
  const headers: Record<string, string> = {
    "RateLimit-Policy": enforced.map((rule) => `"${rule.name}";q=${rule.limit};w=${ceilSeconds(rule.periodMs)}`).join(", "),
    RateLimit: enforced.map((rule) => `"${rule.name}";r=${rule.remaining};t=${ceilSeconds(Math.max(0, rule.resetAt - nowMs))}`).join(", "),
    "X-RateLimit-Limit": String(decision.limit),
    "X-RateLimit-Remaining": String(decision.remaining),
    "X-RateLimit-Reset": String(ceilSeconds(decision.resetAt)),
  };
  if (!decision.allowed) headers["Retry-After"] = String(Math.max(1, ceilSeconds(decision.retryAfterMs)));
  return headers;
}

function ceilSeconds(ms: number): number {
  return Math.ceil(ms / 1000);
}
