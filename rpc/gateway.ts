/** Gateway hot-path contract: the default entrypoint `Gateway`. Types only. */

export interface AuthorizeInput {
  apiKey?: string;
  ip: string;
  method: string;
  path: string;
  scope?: string;
  cost?: number;
  estimate?: number;
}

export interface AuthorizeResult {
  allowed: boolean;
  status: 200 | 401 | 402 | 403 | 429;
  code?: string;
  accountId?: string;
  keyId?: string;
  holdId?: string;
  retryAfterMs: number;
  headers: Record<string, string>;
}

export interface SettleInput {
  accountId: string;
  holdId: string;
  actualCost: number;
  status: number;
  latencyMs: number;
  idempotencyKey: string;
}

/** The default `Gateway` entrypoint. Its methods arrive with the gateway issue. */
export interface GatewayApi {
  authorize(input: AuthorizeInput): Promise<AuthorizeResult>;
  settle(input: SettleInput): Promise<{ balance: number }>;
}
