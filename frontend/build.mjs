// Builds the browser bundle the dashboard serves: src/app.js and src/styles.css
// become app.js and app.css in dashboard/static/eventscope/ (or in --outdir DIR);
// src/topology.js (with Cytoscape.js) becomes topology.js, loaded only by the graph pages.
//
// The output is committed so that running Eventscope needs Python only, and a test
// rebuilds it and compares bytes; so the build must be deterministic: no timestamps,
// no source maps, no comments that could carry a path of the build machine.
import { build } from "esbuild";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function outdirFromArgs(args) {
  const index = args.findIndex((arg) => arg === "--outdir" || arg.startsWith("--outdir="));
  if (index === -1) return path.join(here, "..", "dashboard", "static", "eventscope");
  const value = args[index].includes("=") ? args[index].split("=").slice(1).join("=") : args[index + 1];
  if (!value) throw new Error("--outdir needs a folder");
  return path.resolve(value);
}

const outdir = outdirFromArgs(process.argv.slice(2));
await mkdir(outdir, { recursive: true });

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  // Every browser a console user runs today; ES2020 is the language the sources use.
  target: ["es2020", "chrome100", "firefox100", "safari15", "edge100"],
  logLevel: "info",
};

await Promise.all([
  build({ ...common, entryPoints: ["src/app.js"], outfile: path.join(outdir, "app.js"), format: "iife" }),
  build({ ...common, entryPoints: ["src/styles.css"], outfile: path.join(outdir, "app.css") }),
  build({ ...common, entryPoints: ["src/topology.js"], outfile: path.join(outdir, "topology.js"), format: "iife" }),
]);
