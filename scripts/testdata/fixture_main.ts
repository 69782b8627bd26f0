/**
 * A stand-in program for build tests: answers `--self-test` like the real entry points and
 * exercises an npm import so bundling and compiling include dependencies.
 *
 * @module
 */

import { KubeConfig } from "@kubernetes/client-node";

if (Deno.args.includes("--self-test")) {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: "c", server: "https://127.0.0.1:6443" }],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  if (config.getCurrentCluster()?.server !== "https://127.0.0.1:6443") Deno.exit(1);
  console.log("fixture self-test ok");
} else {
  console.log("fixture: pass --self-test");
}
