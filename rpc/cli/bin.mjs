#!/usr/bin/env node
// `npx tollgate`: runs the TypeScript CLI through tsx (a dependency of this repository).
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2), {
  env: process.env,
  out: (text) => console.log(text),
  err: (text) => console.error(text),
});
