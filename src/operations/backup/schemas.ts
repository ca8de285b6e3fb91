import * as v from "valibot";
import { integer, text } from "../../platform/schemas";

const ACCOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
/** Backup ids are generated (`b-<ms>-<hex>`), so anything else is not one of ours. */
export const BACKUP_ID = /^b-[0-9]{13}-[0-9a-f]{8}$/;

export const backupInputSchema = v.strictObject({
  to: v.literal("r2"),
  accounts: v.optional(v.pipe(v.array(v.pipe(v.string(), v.regex(ACCOUNT_ID, "must be an account id"))), v.maxLength(1_000))),
  subjects: v.optional(v.pipe(v.array(text(1, 256)), v.maxLength(1_000))),
  paths: v.optional(v.boolean()),
  control: v.optional(v.boolean()),
  protection: v.optional(v.boolean()),
});

export const restoreInputSchema = v.strictObject({
  backupId: v.pipe(v.string(), v.regex(BACKUP_ID, "must be a backup id")),
  control: v.optional(v.boolean()),
});

export const importFromKvInputSchema = v.strictObject({
  limit: integer(1, 1_000_000_000),
  ruleName: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be a rule name"))),
  subjectPrefix: v.optional(text(0, 64)),
  cursor: v.optional(text(1, 1_024)),
  batch: v.optional(integer(1, 1_000)),
});

export const backupScheduleInputSchema = v.strictObject({
  everyMs: v.nullable(integer(3_600_000, 30 * 86_400_000)),
  accounts: backupInputSchema.entries.accounts,
  subjects: backupInputSchema.entries.subjects,
  paths: v.optional(v.boolean()),
  control: v.optional(v.boolean()),
});

/** The objects backed up by name. The control objects' bindings come from src/operations/backup/control-objects.ts. */
export const DATA_BINDINGS = ["CREDIT_LEDGER", "RATE_LIMITER", "PATH_COLLECTOR", "AGGREGATOR"] as const;

/**
 * A manifest read back from R2: checked before it names any object, like any other input.
 * `bindings` is every binding a manifest may name (`DATA_BINDINGS` and the control objects'):
 * passed in, because the control registry imports the objects, which import this module.
 */
export const manifestSchema = <const B extends string>(bindings: readonly B[]) =>
  v.object({
    backupId: v.pipe(v.string(), v.regex(BACKUP_ID)),
    createdAt: integer(0, Number.MAX_SAFE_INTEGER),
    objects: v.pipe(
      v.array(
        v.object({
          binding: v.picklist(bindings),
          name: text(1, 256),
          key: text(1, 1_024),
          rows: v.record(v.string(), integer(0, Number.MAX_SAFE_INTEGER)),
        }),
      ),
      v.maxLength(10_000),
    ),
  });
