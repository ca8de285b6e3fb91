// Runs tollgate, the example gateway and the fake LLM upstream locally, side by side, with
// state on disk. Three `wrangler dev` processes: wrangler's local dev registry connects the
// gateway's service binding (tollgate's default entrypoint, Gateway) to the tollgate process,
// and the gateway reaches the fake upstream over HTTP (LLM_UPSTREAM_URL). Once tollgate is up,
// a demo account, its LLM prices and an API key are seeded over capnweb.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../rpc/client";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tollgatePort = Number(process.env.TOLLGATE_PORT ?? 8787);
const gatewayPort = Number(process.env.GATEWAY_PORT ?? 8788);
const upstreamPort = Number(process.env.LLM_UPSTREAM_PORT ?? 8789);
const stateDir = process.env.TOLLGATE_STATE_DIR ?? join(root, ".tollgate-state");
const wrangler = join(root, "node_modules", ".bin", "wrangler");

const token = ensureDevVars();
// The gateway's key at the fake provider: generated per run, known to both, never to clients.
const upstreamKey = randomBytes(16).toString("hex");
const children: ChildProcess[] = [];

/**
 * The demo account's price book, in credits per million tokens (a credit is a hundredth of a
 * cent here): every model of operation "llm" at GPT-4o-like prices, cache reads at half the
 * input price, cache writes at 1.25 times it; every other call one credit.
 */
const DEMO_PRICES = [
  { operation: "llm", model: "*", inputTokens: 25_000, outputTokens: 100_000, cachedTokens: 12_500, cacheWriteTokens: 31_250 },
  { operation: "*", model: "*", request: 1_000_000 },
];

const tollgate = startWorker("tollgate", root, tollgatePort, 9229);
await waitUntilReady(tollgate);
const demoKey = await seedDemo();
const llmUpstream = startWorker("upstream", join(root, "examples", "llm-upstream"), upstreamPort, 9231, { UPSTREAM_KEY: upstreamKey });
const gateway = startWorker("gateway ", join(root, "examples", "gateway"), gatewayPort, 9230, {
  LLM_UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}`,
  LLM_UPSTREAM_KEY: upstreamKey,
});
await Promise.all([waitUntilReady(llmUpstream), waitUntilReady(gateway)]);

console.log(`
tollgate is running (state persisted in ${stateDir}).

  example gateway:  http://127.0.0.1:${gatewayPort}/hello   (100 requests a minute per client IP)
  tollgate capnweb: http://127.0.0.1:${tollgatePort}/rpc    (admin token in .dev.vars)
  dashboard:        http://127.0.0.1:${tollgatePort}/dashboard/   (sign in with the admin token)
  fake LLM upstream: http://127.0.0.1:${upstreamPort}   (behind the gateway's /v1/chat/completions and /v1/messages)

Try (the demo key belongs to account "demo", 1,000 credits; paid routes hold 10 and settle what they used):
  curl -i -H "Authorization: Bearer ${demoKey}" "http://127.0.0.1:${gatewayPort}/v1/echo?msg=hi"
  curl -s -H "Authorization: Bearer ${demoKey}" -d "a prompt of any length" http://127.0.0.1:${gatewayPort}/v1/completions
  for i in $(seq 1 101); do curl -s -o /dev/null -w "%{http_code} " http://127.0.0.1:${gatewayPort}/hello; done; echo
  TOLLGATE_URL=http://127.0.0.1:${tollgatePort}/rpc TOLLGATE_TOKEN=${token} npx tollgate credits balance demo

LLM traffic (docs/llm-gateway.md), relayed to the fake upstream on port ${upstreamPort}, priced per token:
  curl -N -H "Authorization: Bearer ${demoKey}" -H "Content-Type: application/json" -d '{"model":"demo-gpt","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"Say something metered"}]}' http://127.0.0.1:${gatewayPort}/v1/chat/completions
  TOLLGATE_URL=http://127.0.0.1:${tollgatePort}/rpc TOLLGATE_TOKEN=${token} npx tollgate credits entries demo

Alerts (docs/alerts.md) go to the gateway's AlertSink, which logs them as "[gateway ] [alert] ...":
  TOLLGATE_URL=http://127.0.0.1:${tollgatePort}/rpc TOLLGATE_TOKEN=${token} npx tollgate alerts set '{"kind":"balance_below","ruleId":"demo-low","accountId":"demo","level":500}'

Ctrl-C stops all three.
`);

/**
 * Creates the demo account, its credits and an API key, idempotently: the account and grant
 * are keyed, and the key (shown only once by tollgate) is kept in the state directory and
 * reused while it still verifies.
 */
async function seedDemo(): Promise<string> {
  const url = `http://127.0.0.1:${tollgatePort}/rpc`;
  const credits = () => connect(url, { token }).credits();
  const keyFile = join(stateDir, "demo-key");
  await credits().createAccount({ accountId: "demo", name: "Demo account" });
  await credits().grant({ accountId: "demo", amount: 1_000, reason: "demo credits", idempotencyKey: "demo-welcome" });
  await credits().setPrices({ accountId: "demo", prices: DEMO_PRICES });
  if (existsSync(keyFile)) {
    const saved = readFileSync(keyFile, "utf8").trim();
    if ((await credits().verifyKey({ key: saved })).valid) return saved;
  }
  const created = await credits().createKey({
    accountId: "demo",
    name: "demo key",
    scopes: ["api.*"],
    rules: [{ name: "second", algorithm: "token_bucket", limit: 10, periodMs: 1_000 }],
  });
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(keyFile, `${created.key}\n`, { mode: 0o600 });
  return created.key;
}

function ensureDevVars() {
  const path = join(root, ".dev.vars");
  if (!existsSync(path)) {
    const generated = randomBytes(24).toString("hex");
    writeFileSync(path, `TOLLGATE_ADMIN_TOKEN=${generated}\n`, { mode: 0o600 });
    console.log("created .dev.vars with a fresh TOLLGATE_ADMIN_TOKEN");
  }
  const match = /^TOLLGATE_ADMIN_TOKEN=(.*)$/m.exec(readFileSync(path, "utf8"));
  return match?.[1]?.trim() ?? "(see .dev.vars)";
}

function startWorker(label: string, cwd: string, port: number, inspectorPort: number, vars: Record<string, string> = {}): ChildProcess {
  const child = spawn(
    wrangler,
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      stateDir,
      "--show-interactive-dev-session=false",
      ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
    ],
    { cwd, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(child);
  const prefix = `[${label}] `;
  for (const stream of [child.stdout!, child.stderr!]) {
    let pending = "";
    stream.on("data", (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        // Without internet, wrangler cannot fetch Request.cf; it says so on every start. Harmless.
        if (/Request\.cf|ENOTFOUND workers\.cloudflare\.com|GetAddrInfoReqWrap/.test(line)) continue;
        process.stdout.write(`${prefix + line}\n`);
        if (line.includes("Ready on")) child.emit("ready");
      }
    });
  }
  child.on("exit", (code) => {
    console.error(`${prefix}exited with code ${code}`);
    stopAll(code ?? 1);
  });
  return child;
}

function waitUntilReady(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("wrangler dev did not become ready within 120 s")), 120_000);
    child.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

let stopping = false;
function stopAll(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 500).unref();
}

process.on("SIGINT", () => stopAll(0));
process.on("SIGTERM", () => stopAll(0));
