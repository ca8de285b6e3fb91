import type { RetentionSettings } from "../../retention";
import type { Command } from "../command";
import { table } from "../format";

/** `90d`, `26h`, `45m`, or the largest whole unit; `-` when not a fixed time. */
export function duration(ms: number | null): string {
  if (ms === null) return "-";
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1_000]] as const) {
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
