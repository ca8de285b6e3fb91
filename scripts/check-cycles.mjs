// Fails when src/ or rpc/ has an import cycle at run time (`npm run check:cycles`). A cycle
// makes a module's exports depend on load order: a name can still be undefined when it is read.
// Type-only imports are erased, so they do not count, with one exception: under
// verbatimModuleSyntax `import { type A } from "x"` compiles to `import {} from "x"`, which
// still loads x; madge's skipTypeImports would drop it, so it is added back here.
import madge from "madge";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Imports and re-exports that name only inline types (`{ type A, type B }`) and so still load their module. */
function keepEmptiedImports({ ast, dependencies }) {
  for (const node of ast.body) {
    const isImport = node.type === "ImportDeclaration" && node.importKind !== "type";
    const isExport = node.type === "ExportNamedDeclaration" && node.exportKind !== "type" && node.source != null;
    if (!isImport && !isExport) continue;
    const kind = isImport ? "importKind" : "exportKind";
    const specifiers = node.specifiers ?? [];
    if (specifiers.length > 0 && specifiers.every((specifier) => specifier[kind] === "type")) dependencies.push(node.source.value);
  }
}

/** The folders to check; tests of this script pass their own. */
const folders = process.argv.length > 2 ? process.argv.slice(2) : ["src", "rpc"];

const result = await madge(folders, {
  baseDir: root,
  fileExtensions: ["ts"],
  tsConfig: join(root, "tsconfig.json"),
  detectiveOptions: { ts: { skipTypeImports: true, onAfterFile: keepEmptiedImports } },
});

const cycles = result.circular();
const files = Object.keys(result.obj()).length;
if (cycles.length === 0) {
  console.log(`check:cycles: no run-time import cycle in ${files} files of ${folders.join(", ")}`);
} else {
  console.error(`check:cycles: ${cycles.length} run-time import cycle(s) in ${folders.join(", ")}:`);
  for (const cycle of cycles) console.error(`  ${[...cycle, cycle[0]].join(" -> ")}`);
  process.exitCode = 1;
}
