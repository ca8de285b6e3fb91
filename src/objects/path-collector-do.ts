import type { Env } from "../env";
import type { TaskHandlers } from "../scheduling/task-scheduler";
import { TollgateObject } from "./tollgate-object";

/**
 * Declared from the first migration tag so its storage class never has to change; its
 * tables, methods and tasks arrive with the path-statistics issue. Until then it has no public methods.
 */
export class PathCollectorDO extends TollgateObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, { component: "path-collector", migrations: [] });
  }

  protected override taskHandlers(): TaskHandlers {
    return {};
  }
}
