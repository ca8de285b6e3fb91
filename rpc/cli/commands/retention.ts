import type { RetentionSettings } from "../../retention";
import type { Command } from "../command";
import { table } from "../format";

/** `35d`, `24h`, `90m`: the largest whole unit, days from two on (as in the config); `-` when not a fixed time. */
export function duration(ms: number | null): string {
  if (ms === null) return "-";
  if (ms >= 2 * 86_400_000 && ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function render(settings: RetentionSettings): string {
  return table(
    ["data class", "kept", "set by", "deleted by", "note"],
    settings.classes.map((c) => [c.dataClass, duration(c.keptMs), c.setting ?? "fixed", c.appliedBy, c.note]),
  );
}

export const retentionCommands: Command[] = [
  {
    name: "retention",
    usage: "retention [DATA_CLASS]",
    summary: "how long each class of data is kept, where that is configured and what deletes it",
    options: {},
    async run({ api, positionals: [dataClass], print }) {
      print(await api.retention(dataClass === undefined ? {} : { dataClass }), render);
      return 0;
    },
  },
];
