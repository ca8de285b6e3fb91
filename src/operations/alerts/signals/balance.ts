import type { BalanceBelowRule } from "../../../../rpc/alerts";
import type { Balance } from "../../../../rpc/credits";
import { callOnce, type SignalReader } from "./types";

/** `balance_below`: the account's available balance, from its CreditLedgerDO. */
export function balanceReader(
  ledger: (accountId: string) => { balance(input: { accountId: string }): Promise<Balance> },
): SignalReader<BalanceBelowRule> {
  return {
    async read(rule) {
      const balance = await callOnce(ledger(rule.accountId), (stub) => stub.balance({ accountId: rule.accountId }));
      return { value: balance.available };
    },
  };
}
