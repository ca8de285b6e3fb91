// Runs tollgate and the example gateway locally, side by side, with state on disk.
// Two `wrangler dev` processes: wrangler's local dev registry connects the gateway's
// service binding (entrypoint RateLimits) to the tollgate process.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tollgatePort = Number(process.env.TOLLGATE_PORT ?? 8787);
const gatewayPort = Number(process.env.GATEWAY_PORT ?? 8788);
const stateDir = process.env.TOLLGATE_STATE_DIR ?? join(root, ".tollgate-state");
const wrangler = join(root, "node_modules", ".bin", "wrangler");

const token = ensureDevVars();
const children: ChildProcess[] = [];

const tollgate = startWorker("tollgate", root, tollgatePort, 9229);
await waitUntilReady(tollgate);
const gateway = startWorker("gateway ", join(root, "examples", "gateway"), gatewayPort, 9230);
await waitUntilReady(gateway);

console.log(`
tollgate is running (state persisted in ${stateDir}).

  example gateway:  http://127.0.0.1:${gatewayPort}/hello   (100 requests a minute per client IP)
  tollgate capnweb: http://127.0.0.1:${tollgatePort}/rpc    (admin token in .dev.vars)

Try:
  for i in $(seq 1 101); do curl -s -o /dev/null -w "%{http_code} " http://127.0.0.1:${gatewayPort}/hello; done; echo
  curl -i http://127.0.0.1:${gatewayPort}/hello
  TOLLGATE_URL=http://127.0.0.1:${tollgatePort}/rpc TOLLGATE_TOKEN=${token} npx tsx examples/node/client.ts

Ctrl-C stops both.
`);

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

function startWorker(label: string, cwd: string, port: number, inspectorPort: number): ChildProcess {
  const child = spawn(
    wrangler,
    [
      "dev",
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--inspector-port", String(inspectorPort),
      "--persist-to", stateDir,
      "--show-interactive-dev-session=false",
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
        process.stdout.write(prefix + line + "\n");
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
