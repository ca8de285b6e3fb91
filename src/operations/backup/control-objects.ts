import type { ControlBinding } from "../../../rpc/backup";
import type { Env } from "../../platform/env";
import { ADAPTIVE_LIMITS_NAME, ALERTS_NAME, MAINTENANCE_NAME, PROTECTION_NAME } from "../../platform/names";

/** A deployment-wide object that belongs to no account or subject, so a backup needs no name for it. */
export interface ControlObject {
  /** The instances to back up. A function, called at backup time: a sharded object's names depend on the configuration. */
  names(env: Env): readonly string[];
  /** What it holds (docs/operations.md lists the same). */
  holds: string;
}

/**
 * Every control object, in backup and restore order. `Admin.backup` (unless `control: false`)
 * and every scheduled backup include all of them; `Admin.restore` rebuilds them like any other
 * object and re-arms their alarms from their restored `_tasks`.
 *
 * Adding one is one entry here; tsc then asks for its binding in `ControlBinding`
 * (rpc/backup.ts), which is all the manifest check and the contract need.
 */
export const CONTROL_OBJECTS: { readonly [B in ControlBinding]: ControlObject } = {
  PROTECTION: { names: () => [PROTECTION_NAME], holds: "allow and deny lists, the anomaly policy override, the flag log" },
  ADAPTIVE_LIMITS: { names: () => [ADAPTIVE_LIMITS_NAME], holds: "adaptive policies, their levels and level history" },
  MAINTENANCE: { names: () => [MAINTENANCE_NAME], holds: "the backup schedule and its run history" },
  ALERTS: { names: () => [ALERTS_NAME], holds: "alert rules, their state, the alert history and the undelivered outbox" },
};

export const CONTROL_BINDINGS = Object.keys(CONTROL_OBJECTS) as ControlBinding[];

export function isControlBinding(binding: string): binding is ControlBinding {
  return Object.hasOwn(CONTROL_OBJECTS, binding);
}

/** Every control object instance, as `[binding, name]` pairs in registry order. */
export function controlTargets(env: Env): [ControlBinding, string][] {
  return CONTROL_BINDINGS.flatMap((binding) =>
    CONTROL_OBJECTS[binding].names(env).map((name): [ControlBinding, string] => [binding, name]),
  );
}
