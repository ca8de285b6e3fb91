import { main } from "../../rpc/cli/main";

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
