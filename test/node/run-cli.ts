import { afterAll, beforeAll } from "vitest";
import { main } from "../../rpc/cli/main";
import { type DevServer, startTollgate } from "./wrangler-dev";

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs the CLI in-process against `url` with `token`, capturing its output and exit code. */
export async function runCli(url: string, token: string, argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, {
    env: { TOLLGATE_URL: url, TOLLGATE_TOKEN: token },
    out: (text) => out.push(text),
    err: (text) => err.push(text),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/**
 * One `wrangler dev` tollgate for the calling test file, started before its tests with `token`
 * as the admin token (plus `vars`) and stopped after them. `cli(...)` runs the CLI against it;
 * `rpcUrl()` is its capnweb endpoint for tests that also call it directly.
 */
export function cliAgainstTollgate(token: string, vars: Record<string, string> = {}) {
  let server: DevServer | undefined;
  beforeAll(async () => {
    server = await startTollgate({ vars: { TOLLGATE_ADMIN_TOKEN: token, ...vars } });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });
  const rpcUrl = () => `${server!.url}/rpc`;
  return { rpcUrl, cli: (...argv: string[]) => runCli(rpcUrl(), token, argv) };
}
