import { parseArgs } from "node:util";
import { connect, type Transport } from "../client";
import { errorCodeOf } from "../errors";
import { UsageError } from "./args";
import type { Command, CommandContext } from "./command";
import { adaptiveCommands } from "./commands/adaptive";
import { accountCommands, creditCommands, keyCommands } from "./commands/credits";
import { limitsCommands } from "./commands/limits";
import { retentionCommands } from "./commands/retention";
import { metricsCommands } from "./commands/metrics";
import { statsCommands } from "./commands/stats";
import { protectionCommands } from "./commands/protection";
import { alertsCommands } from "./commands/alerts";

/** Every command, found by its leading words. Each domain adds its own list. */
export const COMMANDS: Command[] = [
  {
    name: "whoami",
    usage: "whoami",
    summary: "show what the token grants",
    options: {},
    async run({ api, print }) {
      print(await api.whoami(), (p) => (p.accountId ? `${p.role} of account ${p.accountId}` : p.role));
      return 0;
    },
  },
  ...accountCommands,
  ...keyCommands,
  ...creditCommands,
  ...limitsCommands,
  ...statsCommands,
  ...adaptiveCommands,
  ...protectionCommands,
  ...retentionCommands,
  ...metricsCommands,
  ...alertsCommands,
];

const GLOBAL_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  transport: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export interface Io {
  env: Record<string, string | undefined>;
  out(text: string): void;
  err(text: string): void;
}

/**
 * Runs the CLI with `argv` (without `node` and the script) and returns the exit code:
 * 0 success, 1 a tollgate or connection error, 2 a usage error, 3 a denied rate-limit check.
 */
export async function main(argv: string[], io: Io): Promise<number> {
  const command = findCommand(argv);
  try {
    if (!command) {
      if (argv.length > 0 && !argv.includes("--help") && !argv.includes("-h")) throw new UsageError(`unknown command: ${argv.join(" ")}`);
      io.out(help());
      return 0;
    }
    const words = command.name.split(" ").length;
    const { values, positionals } = parseArgs({
      args: argv.slice(words),
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      io.out(`usage: tollgate ${command.usage} [--url URL] [--token TOKEN] [--json]\n\n${command.summary}`);
      return 0;
    }
    const url = (values.url as string | undefined) ?? io.env.TOLLGATE_URL;
    const token = (values.token as string | undefined) ?? io.env.TOLLGATE_TOKEN;
    if (!url) throw new UsageError("give --url or set TOLLGATE_URL (e.g. http://127.0.0.1:8787/rpc)");
    if (!token) throw new UsageError("give --token or set TOLLGATE_TOKEN");
    const transport = ((values.transport as string | undefined) ?? "http-batch") as Transport;
    if (transport !== "http-batch" && transport !== "websocket") throw new UsageError("--transport is http-batch or websocket");
    const context: CommandContext = {
      api: connect(url, { token, transport }),
      positionals,
      options: values as CommandContext["options"],
      print: (value, human) => io.out(values.json ? JSON.stringify(value, null, 2) : human(value)),
      streaming: async () => connect(url, { token, transport: "websocket", webSocket: await openWebSocket(url) }),
      progress: (text) => io.err(text),
    };
    return await command.run(context);
  } catch (error) {
    return report(error, command, io);
  }
}

/** Node 22+ has a global WebSocket; Node 20 uses the `ws` package (capnweb reads the global's constants). */
async function openWebSocket(url: string): Promise<WebSocket> {
  if (globalThis.WebSocket === undefined) {
    (globalThis as { WebSocket?: unknown }).WebSocket = (await import("ws")).WebSocket;
  }
  return new globalThis.WebSocket(url.replace(/^http(s?):/, "ws$1:"));
}

function findCommand(argv: string[]): Command | undefined {
  const words = argv.filter((arg) => !arg.startsWith("-"));
  return [...COMMANDS]
    .sort((a, b) => b.name.length - a.name.length)
    .find((command) => command.name.split(" ").every((word, i) => words[i] === word && argv[i] === word));
}

function report(error: unknown, command: Command | undefined, io: Io): number {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    io.err(`error: ${(error as Error).message}\n`);
    io.err(command ? `usage: tollgate ${command.usage}` : help());
    return 2;
  }
  const code = errorCodeOf(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code) {
    io.err(`error: ${message}`);
    for (const detail of (error as { details?: { path: string; message: string }[] }).details ?? []) {
      io.err(`  ${detail.path || "(input)"}: ${detail.message}`);
    }
  } else {
    io.err(`error: could not talk to tollgate: ${message}`);
  }
  return 1;
}

function help(): string {
  const lines = COMMANDS.map((command) => `  ${command.usage}\n      ${command.summary}`);
  return [
    "usage: tollgate COMMAND [options] [--url URL] [--token TOKEN] [--json] [--transport http-batch|websocket]",
    "",
    "Connection: --url/TOLLGATE_URL (http://host/rpc) and --token/TOLLGATE_TOKEN (the admin token).",
    "Exit codes: 0 ok, 1 error from tollgate or the connection, 2 usage error, 3 denied (limits check).",
    "",
    "Commands:",
    ...lines,
  ].join("\n");
}
