import type { KeySpendShareRule } from "../../../../rpc/alerts";
import type { KeySpend } from "../../../../rpc/credits";
import { callOnce, type SignalReader } from "./types";

/**
 * `key_spend_share`: the larger of the key's day and month shares (spent / cap) in the caps'
 * current periods, from its CreditLedgerDO; `null` for a key without a cap.
 */
export function keySpendReader(
  ledger: (accountId: string) => { keySpend(input: { accountId: string; keyId: string }): Promise<KeySpend> },
): SignalReader<KeySpendShareRule> {
  return {
    async read(rule) {
      const spend = await callOnce(ledger(rule.accountId), (stub) => stub.keySpend({ accountId: rule.accountId, keyId: rule.keyId }));
      const shares = [spend.day, spend.month].filter((p) => p.cap !== undefined).map((p) => (p.cap === 0 ? 1 : p.spent / p.cap!));
      return { value: shares.length === 0 ? null : Math.max(...shares) };
    },
  };
}
