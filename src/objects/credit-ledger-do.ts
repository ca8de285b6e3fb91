import type { Env } from "../env";
import type { TaskHandlers } from "../scheduling/task-scheduler";
import { TollgateObject } from "./tollgate-object";

/**
 * Declared from the first migration tag so its storage class never has to change; its
 * tables, methods and tasks arrive with the credit ledger issue. Until then it has no public methods.
 */
export class CreditLedgerDO extends TollgateObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "credit-ledger", migrations: [] });
  }

  protected override taskHandlers(): TaskHandlers {
    return {};
  }
}
