import type { Account, Balance, Entry, KeyInfo } from "../../credits";
import { parseCount, parseDuration, parseRule, UsageError } from "../args";
import type { Command } from "../command";
import { table, when } from "../format";

function need(value: string | undefined, what: string): string {
  if (!value) throw new UsageError(`give ${what}`);
  return value;
}

function renderBalance(b: Balance): string {
  return table(
    ["available", "held", "granted", "consumed", "expired", "overdraft limit"],
    [[b.available, b.held, b.granted, b.consumed, b.expired, b.overdraftLimit]],
  );
}

function renderKeys(keys: KeyInfo[]): string {
  if (keys.length === 0) return "no keys";
  return table(
    ["key id", "name", "scopes", "rules", "created", "expires", "state"],
    keys.map((k) => [
      k.keyId,
      k.name,
      k.scopes.join(" "),
      k.rules.map((r) => `${r.name} ${r.limit}/${r.periodMs}ms`).join(", "),
      new Date(k.createdAt).toISOString(),
      k.expiresAt === undefined ? "" : new Date(k.expiresAt).toISOString(),
      k.revokedAt !== undefined
        ? "revoked"
        : k.rolledTo !== undefined
          ? `rolled to ${k.rolledTo}`
          : k.expiresAt !== undefined && k.expiresAt <= Date.now()
            ? "expired"
            : "active",
    ]),
  );
}

function renderEntries(items: Entry[]): string {
  if (items.length === 0) return "no entries";
  return table(
    ["seq", "at", "kind", "amount", "balance after", "key", "reason"],
    items.map((e) => [e.seq, new Date(e.at).toISOString(), e.kind, e.amount, e.balanceAfter, e.keyId ?? "", e.reason]),
  );
}

function renderAccount(a: Account): string {
  return `account ${a.accountId}  "${a.name}"  overdraft limit ${a.overdraftLimit}  created ${new Date(a.createdAt).toISOString()}`;
}

export const accountCommands: Command[] = [
  {
    name: "accounts create",
    usage: "accounts create NAME [--id ACCOUNT_ID] [--overdraft N]",
    summary: "create an account (again with the same name and limit: no change)",
    options: { id: { type: "string" }, overdraft: { type: "string" } },
    async run({ api, positionals: [name], options, print }) {
      const account = await api.credits().createAccount({
        name: need(name, "a NAME"),
        ...(options.id === undefined ? {} : { accountId: options.id as string }),
        ...(options.overdraft === undefined ? {} : { overdraftLimit: parseCount(options.overdraft as string, "--overdraft") }),
      });
      print(account, renderAccount);
      return 0;
    },
  },
  {
    name: "accounts show",
    usage: "accounts show ACCOUNT_ID",
    summary: "show an account and its balance",
    options: {},
    async run({ api, positionals: [accountId], print }) {
      const ref = { accountId: need(accountId, "an ACCOUNT_ID") };
      const credits = api.credits();
      const [account, balance] = await Promise.all([credits.account(ref), credits.balance(ref)]);
      print({ account, balance }, (v) => `${renderAccount(v.account)}\n\n${renderBalance(v.balance)}`);
      return 0;
    },
  },
];

export const keyCommands: Command[] = [
  {
    name: "keys create",
    usage:
      "keys create ACCOUNT_ID --name NAME [--scope SCOPE]... [--rule name:algorithm:limit/period]... [--expires DURATION] [--cap-day N] [--cap-month N]",
    summary: "create an API key; the key is printed once and never stored",
    options: {
      name: { type: "string" },
      scope: { type: "string", multiple: true },
      rule: { type: "string", multiple: true },
      expires: { type: "string" },
      "cap-day": { type: "string" },
      "cap-month": { type: "string" },
    },
    async run({ api, positionals: [accountId], options, print }) {
      const capDay = options["cap-day"] === undefined ? undefined : parseCount(options["cap-day"] as string, "--cap-day");
      const capMonth = options["cap-month"] === undefined ? undefined : parseCount(options["cap-month"] as string, "--cap-month");
      const created = await api.credits().createKey({
        accountId: need(accountId, "an ACCOUNT_ID"),
        name: need(options.name as string | undefined, "--name NAME"),
        scopes: (options.scope as string[] | undefined) ?? [],
        ...(options.rule === undefined ? {} : { rules: (options.rule as string[]).map(parseRule) }),
        ...(options.expires === undefined ? {} : { expiresAt: Date.now() + parseDuration(options.expires as string) }),
        ...(capDay === undefined && capMonth === undefined
          ? {}
          : {
              spendCap: { ...(capDay === undefined ? {} : { perDay: capDay }), ...(capMonth === undefined ? {} : { perMonth: capMonth }) },
            }),
      });
      print(created, (c) => `key ${c.keyId} created. Its secret is shown only now:\n\n  ${c.key}\n`);
      return 0;
    },
  },
  {
    name: "keys list",
    usage: "keys list ACCOUNT_ID",
    summary: "list an account's keys (never their secrets)",
    options: {},
    async run({ api, positionals: [accountId], print }) {
      print(await api.credits().listKeys({ accountId: need(accountId, "an ACCOUNT_ID") }), (r) => renderKeys(r.keys));
      return 0;
    },
  },
  {
    name: "keys revoke",
    usage: "keys revoke ACCOUNT_ID KEY_ID",
    summary: "revoke a key: its very next request fails",
    options: {},
    async run({ api, positionals: [accountId, keyId], print }) {
      const info = await api.credits().revokeKey({ accountId: need(accountId, "an ACCOUNT_ID"), keyId: need(keyId, "a KEY_ID") });
      print(info, (k) => `key ${k.keyId} revoked at ${new Date(k.revokedAt!).toISOString()}`);
      return 0;
    },
  },
  {
    name: "keys roll",
    usage: "keys roll ACCOUNT_ID KEY_ID [--grace DURATION]",
    summary: "replace a key with a new one; the old one works for the grace period (default 0: revoked now)",
    options: { grace: { type: "string" } },
    async run({ api, positionals: [accountId, keyId], options, print }) {
      const graceMs = options.grace === undefined ? 0 : parseDuration(options.grace as string);
      const rolled = await api.credits().rollKey({ accountId: need(accountId, "an ACCOUNT_ID"), keyId: need(keyId, "a KEY_ID"), graceMs });
      print(
        rolled,
        (r) =>
          `key ${r.previous.keyId} rolled to ${r.keyId} (old key valid ${graceMs === 0 ? "no longer" : `until ${when(Date.now() + graceMs)}`}). The new secret is shown only now:\n\n  ${r.key}\n`,
      );
      return 0;
    },
  },
];

export const creditCommands: Command[] = [
  {
    name: "credits grant",
    usage: "credits grant ACCOUNT_ID AMOUNT --reason TEXT [--key IDEMPOTENCY_KEY] [--expires DURATION] [--priority N]",
    summary: "add credits (retry with the same --key to grant once)",
    options: { reason: { type: "string" }, key: { type: "string" }, expires: { type: "string" }, priority: { type: "string" } },
    async run({ api, positionals: [accountId, amount], options, print }) {
      const entry = await api.credits().grant({
        accountId: need(accountId, "an ACCOUNT_ID"),
        amount: parseCount(need(amount, "an AMOUNT"), "AMOUNT"),
        reason: need(options.reason as string | undefined, "--reason TEXT"),
        idempotencyKey: (options.key as string | undefined) ?? `cli-${crypto.randomUUID()}`,
        ...(options.expires === undefined ? {} : { expiresAt: Date.now() + parseDuration(options.expires as string) }),
        ...(options.priority === undefined ? {} : { priority: parseCount(options.priority as string, "--priority") }),
      });
      print(entry, (e) => `granted ${e.amount}; available now ${e.balanceAfter} (entry ${e.entryId})`);
      return 0;
    },
  },
  {
    name: "credits balance",
    usage: "credits balance ACCOUNT_ID",
    summary: "show an account's balance",
    options: {},
    async run({ api, positionals: [accountId], print }) {
      print(await api.credits().balance({ accountId: need(accountId, "an ACCOUNT_ID") }), renderBalance);
      return 0;
    },
  },
  {
    name: "credits entries",
    usage: "credits entries ACCOUNT_ID [--limit N] [--cursor CURSOR]",
    summary: "list ledger entries in order, a page at a time",
    options: { limit: { type: "string" }, cursor: { type: "string" } },
    async run({ api, positionals: [accountId], options, print }) {
      const page = await api.credits().entries({
        accountId: need(accountId, "an ACCOUNT_ID"),
        ...(options.limit === undefined ? {} : { limit: parseCount(options.limit as string, "--limit") }),
        ...(options.cursor === undefined ? {} : { cursor: options.cursor as string }),
      });
      print(page, (p) => renderEntries(p.items) + (p.cursor === undefined ? "" : `\n\nmore: --cursor ${p.cursor}`));
      return 0;
    },
  },
];
