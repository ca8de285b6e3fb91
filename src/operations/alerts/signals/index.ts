import type { AlertKind } from "../../../../rpc/alerts";
import type { Env } from "../../../platform/env";
import { monthlyCostProjection } from "../../metrics/cost-report";
import { balanceReader } from "./balance";
import { costProjectionReader } from "./cost-projection";
import { denialRateReader } from "./denial-rate";
import { keySpendReader } from "./key-spend";
import { pathErrorRateReader, pathP99Reader } from "./path-window";
import type { SignalReaders } from "./types";
import { AGGREGATOR_NAME } from "../../../platform/names";

/**
 * The production signal readers: the one place that says which rule kinds this deployment can
 * evaluate. A kind missing here is refused by `setRule` with `UNIMPLEMENTED` and the message
 * in `UNAVAILABLE` (tests use reader sets without some kinds).
 */
export function productionReaders(env: Env): SignalReaders {
  const ledger = (accountId: string) => env.CREDIT_LEDGER.getByName(accountId);
  const aggregator = () => env.AGGREGATOR.getByName(AGGREGATOR_NAME);
  return {
    balance_below: balanceReader(ledger),
    key_spend_share: keySpendReader(ledger),
    denial_rate: denialRateReader((subject) => env.RATE_LIMITER.getByName(subject)),
    path_error_rate: pathErrorRateReader(aggregator),
    path_p99: pathP99Reader(aggregator),
    cost_projection: costProjectionReader((nowMs) => monthlyCostProjection(env, nowMs)),
  };
}

/** Why a kind without a reader cannot be set. */
export const UNAVAILABLE: Readonly<Record<AlertKind, string>> = {
  balance_below: "balance signals are unavailable in this deployment",
  key_spend_share: "key spend signals are unavailable in this deployment",
  denial_rate: "denial-rate signals are unavailable in this deployment",
  path_error_rate: "path statistics are unavailable in this deployment",
  path_p99: "path statistics are unavailable in this deployment",
  cost_projection: "cost metrics are unavailable in this deployment: cost_projection rules cannot be evaluated",
};
