import { env } from "cloudflare:workers";
import { expect, it } from "vitest";

it("admits a first check through the RateLimits entrypoint", async () => {
  const decision = await env.LIMITS.check({
    subject: "ip:smoke",
    rules: [{ name: "minute", algorithm: "fixed_window", limit: 2, periodMs: 60_000 }],
  });
  expect(decision.allowed).toBe(true);
  expect(decision.remaining).toBe(1);
});
