import assert from "node:assert/strict";
import { npmPackageName, runtimeImports, startupExternalImports } from "./runtime_imports.ts";

Deno.test("npmPackageName strips npm:, the version and a subpath", () => {
  assert.equal(npmPackageName("npm:@grpc/grpc-js@1.14.7"), "@grpc/grpc-js");
  assert.equal(npmPackageName("npm:/hono@4.13.19/http-exception"), "hono");
  assert.equal(npmPackageName("npm:reflect-metadata@0.2.2"), "reflect-metadata");
  assert.equal(npmPackageName("npm:hono"), "hono");
});

Deno.test("startupExternalImports follows static and top-level dynamic imports only", () => {
  const dep = (specifier: string, line = 0, isDynamic = false) => ({
    code: { specifier, span: { start: { line } } },
    isDynamic,
  });
  const lines: Record<string, string[]> = {
    "file:///a.ts": ["import './b.ts';", "function f() {", "  return import('npm:lazy@1');", "}"],
    "file:///b.ts": ["export const x = await import('npm:eager@2');"],
  };
  const result = startupExternalImports({
    roots: ["file:///a.ts"],
    modules: [
      {
        specifier: "file:///a.ts",
        dependencies: [
          dep("file:///b.ts"),
          dep("npm:lazy@1.0.0", 2, true),
          dep("file:///never.ts", 2, true),
          dep("node:https"),
        ],
      },
      { specifier: "file:///b.ts", dependencies: [dep("npm:eager@2.0.0", 0, true)] },
      { specifier: "file:///never.ts", dependencies: [dep("npm:never@3.0.0")] },
    ],
  }, (specifier, line) => lines[specifier]?.[line]);
  assert.deepEqual(result, { npm: ["eager"], node: ["node:https"] });
});

Deno.test("runtimeImports: the CSI driver loads x509 only for --self-test", async () => {
  const csi = await runtimeImports("csi/main.ts");
  assert.ok(csi.npm.includes("@grpc/grpc-js"), JSON.stringify(csi));
  assert.ok(!csi.npm.includes("@peculiar/x509"), JSON.stringify(csi));
  assert.ok(!csi.npm.includes("hono"), JSON.stringify(csi));
});
