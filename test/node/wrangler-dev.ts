import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface DevServer {
  url: string;
  /** The on-disk state directory, reusable by a later server. */
  stateDir: string;
  /** Stops the server gracefully and, unless `keepState`, deletes its state. */
  stop(options?: { keepState?: boolean }): Promise<void>;
  /** Kills wrangler and workerd at once (SIGKILL to the process group), as a crash would. */
  crash(): Promise<void>;
}

export interface StartOptions {
  vars: Record<string, string>;
  /** Reuse an earlier server's state instead of starting fresh. */
  stateDir?: string;
  /** The Worker's folder (its wrangler.toml); tollgate's own by default. */
  cwd?: string;
  /** More environment for wrangler, e.g. WRANGLER_REGISTRY_PATH to keep a test's Workers among themselves. */
  env?: Record<string, string>;
}

const root = join(import.meta.dirname, "..", "..");

/**
 * Starts `wrangler dev` for tollgate (or the Worker in `cwd`) on a free loopback port with fresh on-disk state and the
 * given secrets, and resolves once it is ready. Used by tests that need a real HTTP endpoint.
 */
export async function startTollgate({ vars, stateDir, cwd = root, env = {} }: StartOptions): Promise<DevServer> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const state = stateDir ?? mkdtempSync(join(tmpdir(), "tollgate-dev-"));
  const args = [
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(port + 1),
    "--persist-to",
    state,
    "--show-interactive-dev-session=false",
    ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
  ];
  const child = spawn(join(root, "node_modules", ".bin", "wrangler"), args, {
    cwd,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so a crash can take workerd down with wrangler.
    detached: true,
  });
  await waitForReady(child, port);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stateDir: state,
    async stop(options) {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      if (!options?.keepState) rmSync(state, { recursive: true, force: true });
    },
    async crash() {
      process.kill(-child.pid!, "SIGKILL");
      await exited;
    },
  };
}

function waitForReady(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => fail(new Error(`wrangler dev was not ready within 90 s:\n${output}`)), 90_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill("SIGTERM");
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(`Ready on http://127.0.0.1:${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => fail(new Error(`wrangler dev exited with ${code}:\n${output}`)));
  });
}
