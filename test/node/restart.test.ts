import { afterAll, describe, expect, it } from "vitest";
import { connect, type Decision, type Rule } from "../../rpc";
import { type DevServer, startTollgate } from "./wrangler-dev";

const TOKEN = "restart-test-admin-token-91e3";
const YEAR = 366 * 24 * 3_600_000;
const LIMIT = 10_000;
const rules: Rule[] = [
  { name: "fixed", algorithm: "fixed_window", limit: LIMIT, periodMs: YEAR },
  { name: "sliding", algorithm: "sliding_window", limit: LIMIT, periodMs: YEAR },
];
const subject = "restart:workload";

const servers: DevServer[] = [];
afterAll(async () => {
  for (const server of servers.reverse()) await server.stop();
});

function check(server: DevServer, key: string): Promise<Decision> {
  return connect(`${server.url}/rpc`, { token: TOKEN }).rateLimits().check({ subject, rules, idempotencyKey: key });
}

describe("a crash of the whole process in the middle of a workload", () => {
  it("keeps everything acknowledged and counts every operation exactly once after restart", async () => {
    const first = await startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: TOKEN } });
    servers.push(first);

    // Eight callers issue checks with unique idempotency keys until the process is killed.
    const acknowledged = new Map<string, Decision>();
    const issued: string[] = [];
    let crashed = false;
    const caller = async (id: number) => {
      for (let n = 0; !crashed && n < 1_000; n++) {
        const key = `op-${id}-${n}`;
        issued.push(key);
        try {
          acknowledged.set(key, await check(first, key));
        } catch {
          return; // the server went away mid-call: this operation's fate is unknown
        }
      }
    };
    const callers = Array.from({ length: 8 }, (_, id) => caller(id));
    while (acknowledged.size < 150) await new Promise((resolve) => setTimeout(resolve, 20));
    crashed = true;
    await first.crash();
    await Promise.all(callers);

    const second = await startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: TOKEN }, stateDir: first.stateDir });
    servers.push(second);

    // Retry every operation ever issued, acknowledged or not, with its own key.
    for (const key of issued) {
      const replay = await check(second, key);
      const original = acknowledged.get(key);
      if (original) expect(replay).toEqual(original);
    }
    const after = await connect(`${second.url}/rpc`, { token: TOKEN }).rateLimits().peek({ subject, rules });
    expect(after.rules.map((rule) => rule.remaining)).toEqual([LIMIT - issued.length, LIMIT - issued.length]);
    expect(acknowledged.size).toBeGreaterThanOrEqual(150);
  }, 240_000);
});
