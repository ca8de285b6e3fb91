/** Credits and API-key contract: entrypoint `Credits`, object `CreditLedgerDO`. Types only. */

export interface CreateAccountInput {
  accountId?: string;
  name: string;
  overdraftLimit?: number;
}

export interface Account {
  accountId: string;
  name: string;
  overdraftLimit: number;
  createdAt: number;
}

export interface Balance {
  available: number;
  held: number;
  granted: number;
  consumed: number;
  expired: number;
  overdraftLimit: number;
}

/** The `Credits` entrypoint. Its methods arrive with the ledger issue. */
export interface CreditsApi {
  createAccount(input: CreateAccountInput): Promise<Account>;
  balance(input: { accountId: string }): Promise<Balance>;
}
