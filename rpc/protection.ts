/**
 * Protection contract: anomaly detection, allow and deny lists (`Admin.protection()`, capnweb
 * `AdminApi.protection()`). Types only. See docs/protection.md.
 */
import type { StatsRange } from "./path-stats";

/**
 * When a client is flagged, and what happens then. Every field has a default (docs/protection.md);
 * `ANOMALY_POLICY` (wrangler.toml) overrides the defaults, and `setPolicy` overrides both at run time.
 */
export interface AnomalyPolicy {
  /** Judge clients at all. */
  enabled: boolean;
  /** Block a flagged client's IP through its limiter (`ip:<address>`), unless allow-listed. */
  block: boolean;
  /** How long a block lasts; also how long a flagged client is not flagged again. */
  blockMs: number;
  /** Weight of each closed minute in the client's baseline (exponentially weighted, 0 < alpha ≤ 1). */
  alpha: number;
  /** Burst: flag when a minute's requests exceed mean + rateK · sd … */
  rateK: number;
  /** … and at least this many (a floor that keeps quiet clients from being flagged for small jumps). */
  rateMinCount: number;
  /** The sd used is at least this … */
  rateMinSd: number;
  /** … and at least this share of the mean (so a very steady client is not flagged for a little jitter). */
  rateMinRelativeSd: number;
  /** Scan: flag when a minute's share of 4xx (429 excluded) exceeds mean + scanK · sd … */
  scanK: number;
  /** … and the minute has at least this many requests … */
  scanMinCount: number;
  /** … and the share is at least this. */
  scanMinShare: number;
  /** The share's sd used is at least this. */
  scanMinSd: number;
  /** A new client's baseline before any minute is folded in: requests per minute, mean and sd. */
  priorRateMean: number;
  priorRateSd: number;
  /** A new client's 4xx share: mean and sd. */
  priorScanShare: number;
  priorScanSd: number;
}

/** The rule that flagged a client. */
export type AnomalyRule = "burst" | "scan";

/** Why a client was flagged: the minute's counts against its baseline. */
export interface AnomalyEvidence {
  /** Start of the minute judged. */
  minuteMs: number;
  requests: number;
  /** 4xx answers other than 429, of which 404s. */
  clientErrors: number;
  notFound: number;
  serverErrors: number;
  /** The baseline the minute was judged against. */
  rateMean: number;
  rateSd: number;
  scanShareMean: number;
  scanShareSd: number;
  /** The threshold the minute crossed (requests for "burst", a share for "scan"). */
  threshold: number;
  /** Closed minutes in the baseline (0: judged against the priors). */
  minutesSeen: number;
}

/** One flag, as the log keeps it. `client` is the stored client id (privacy mode applied), never a raw address. */
export interface Flag {
  flagId: number;
  at: number;
  client: string;
  rule: AnomalyRule;
  /** Whether the client's IP was blocked; false when allow-listed, when the policy does not block, or when it failed. */
  blocked: boolean;
  allowListed: boolean;
  blockedUntil?: number;
  evidence: AnomalyEvidence;
}

export interface AllowEntry {
  cidr: string;
  note?: string;
  addedAt: number;
}

export interface DenyEntry {
  cidr: string;
  /** Absent: until removed. */
  until?: number;
  reason: string;
  addedAt: number;
}

export interface PolicyInfo {
  /** What collectors apply: defaults, then ANOMALY_POLICY, then the run-time override. */
  effective: AnomalyPolicy;
  /** The run-time override set by `setPolicy` (empty when none). */
  override: Partial<AnomalyPolicy>;
  updatedAt: number | null;
}

/** `Admin.protection()`: the lists, the policy and the flag log. */
export interface ProtectionApi {
  allowList(): Promise<{ entries: AllowEntry[] }>;
  /** Adds (or replaces the note of) a range that is never blocked. */
  allow(input: { cidr: string; note?: string }): Promise<AllowEntry>;
  unallow(input: { cidr: string }): Promise<{ removed: boolean }>;
  denyList(): Promise<{ entries: DenyEntry[] }>;
  /** Refuses a range at `Gateway.authorize` (403 IP_DENIED) until `untilMs`, or until removed. */
  deny(input: { cidr: string; untilMs?: number; reason: string }): Promise<DenyEntry>;
  undeny(input: { cidr: string }): Promise<{ removed: boolean }>;
  policy(): Promise<PolicyInfo>;
  /** Replaces the run-time override (fields not given fall back to ANOMALY_POLICY); `{}` clears it. */
  setPolicy(input: { policy: Partial<AnomalyPolicy> }): Promise<PolicyInfo>;
  /** Flags, newest first. */
  flagged(input?: { range?: StatsRange; limit?: number; client?: string }): Promise<{ flags: Flag[] }>;
}
