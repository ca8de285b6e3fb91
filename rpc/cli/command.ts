import type { RpcStub } from "capnweb";
import type { AdminApi } from "../admin";

export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
}

export interface CommandContext {
  api: RpcStub<AdminApi>;
  positionals: string[];
  options: Record<string, string | boolean | string[] | undefined>;
  /** Prints `value` as JSON with --json, otherwise as `human(value)`. */
  print<T>(value: T, human: (value: T) => string): void;
  /** A WebSocket session (for calls that return streams); dispose it when done. */
  streaming(): Promise<RpcStub<AdminApi>>;
  /** A progress line on stderr (never on stdout, which may be JSON). */
  progress(text: string): void;
}

/** One CLI command: `name` is its words (`"limits check"`); `run` returns the exit code. */
export interface Command {
  name: string;
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  run(context: CommandContext): Promise<number>;
}
