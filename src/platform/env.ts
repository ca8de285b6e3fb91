import type { AlertNotification } from "../../rpc/alerts";

/**
 * The bindings and configuration of the tollgate Worker.
 *
 * Everything wrangler.toml declares comes from `Cloudflare.Env`, which `wrangler types`
 * generates into worker-configuration.d.ts (`npm run types`; `npm test` fails when that file
 * is older than wrangler.toml). Only what the file cannot say is written here: the secrets,
 * bindings that may be absent, and the alert sink's method.
 */
export interface Env
  extends Omit<Cloudflare.Env, "ALERT_SINK" | "BACKUPS" | "ASSETS" | "TOLLGATE_ADMIN_TOKEN" | "LEGACY_KV" | "PATH_IP_HASH_KEY"> {
  /** Service binding to a sibling Worker's entrypoint that receives alerts. Without it alerts stay pending. */
  ALERT_SINK?: { notify(alert: AlertNotification): Promise<unknown> };
  /** R2 bucket for `Admin.backup()` dumps (see docs/operations.md). Without it backup and restore fail. */
  BACKUPS?: R2Bucket;
  /** The static assets in public/ (wrangler.toml [assets]): the dashboard. */
  ASSETS?: Fetcher;
  /** Optional: the legacy KV limiter's namespace, read by `Admin.importFromKv()`. */
  LEGACY_KV?: KVNamespace;
  /** Secret: authenticates capnweb callers as admin. Unset means no admin access at all. */
  TOLLGATE_ADMIN_TOKEN?: string;
  /** Secret, only with PATH_IP_MODE = "hash": the HMAC key client IPs are stored under. */
  PATH_IP_HASH_KEY?: string;
}
