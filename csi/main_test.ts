import assert from "node:assert/strict";
import { main, parseFlags, UsageError } from "./main.ts";

Deno.test("flags: the defaults the manifests rely on", () => {
  const flags = parseFlags(["--node-id=n1"]);
  assert.equal(flags.endpoint, "unix:///csi/csi.sock");
  assert.equal(flags.nodeId, "n1");
  assert.equal(flags.stateDir, "/var/lib/spire-cacerts");
  assert.equal(flags.tmpfsSize, "8Mi");
  assert.deepEqual(flags.baseRoots, { kind: "bundled" });
  assert.equal(flags.renderConcurrency, 32);
  assert.equal(flags.shutdownTimeoutMs, 10_000);
  assert.deepEqual(flags.allowedRefNamespaces, []);
  assert.equal(flags.plainDir, false);
  assert.equal(flags.mode, "run");
});

Deno.test("flags: values are converted once, by their kind", () => {
  const flags = parseFlags([
    "--plain-dir",
    "--base-roots=file:/etc/ssl/certs/ca-certificates.crt",
    "--allowed-ref-namespaces=spire, certs",
    "--render-concurrency=4",
    "--log-level=debug",
    "--shutdown-timeout=2.5s",
  ]);
  assert.equal(flags.shutdownTimeoutMs, 2_500);
  assert.equal(flags.plainDir, true);
  assert.deepEqual(flags.baseRoots, { kind: "file", path: "/etc/ssl/certs/ca-certificates.crt" });
  assert.deepEqual(flags.allowedRefNamespaces, ["spire", "certs"]);
  assert.equal(flags.renderConcurrency, 4);
  assert.equal(flags.logLevel, "debug");
});

Deno.test("flags: a bad value is a UsageError naming the flag and what it takes; exit 2", async () => {
  for (
    const [arg, message] of [
      ["--tmpfs-size=0", /--tmpfs-size: "0" is not a size such as 8Mi/],
      ["--base-roots=all", /--base-roots: "all" is not none, bundled or file:\/absolute\/path/],
      ["--render-concurrency=0", /--render-concurrency: "0" is not a positive integer/],
      ["--shutdown-timeout=10", /--shutdown-timeout: "10" is not a positive duration/],
      ["--log-level=trace", /--log-level: "trace" is not debug, info, warn or error/],
      ["--nope", /Unknown option '--nope'/],
    ] as const
  ) {
    assert.throws(
      () => parseFlags([arg]),
      (e: Error) => e instanceof UsageError && message.test(e.message),
    );
  }
  const errors: string[] = [];
  const error = console.error;
  console.error = (line: string) => errors.push(line);
  try {
    assert.equal(await main(["--tmpfs-size=0"]), 2);
  } finally {
    console.error = error;
  }
  assert.match(
    errors.join("\n"),
    /^spire-cacerts-csi: --tmpfs-size: .*\n\nspire-cacerts-csi \S+: CSI node plugin/,
  );
  assert.ok(
    errors.join("\n").includes(
      "\n  --base-roots KIND           public roots under the CAs: none, bundled (this image's\n" +
        `${" ".repeat(30)}ca-certificates) or file:/path (default bundled)\n`,
    ),
  );
});

Deno.test("flags: --cluster-resource-namespace defaults to cert-manager and takes a namespace", () => {
  assert.equal(parseFlags(["--node-id=n1"]).clusterResourceNamespace, "cert-manager");
  assert.equal(
    parseFlags(["--cluster-resource-namespace=certs-system"]).clusterResourceNamespace,
    "certs-system",
  );
  for (const value of ["", "Not_A_Namespace"]) {
    assert.throws(
      () => parseFlags([`--cluster-resource-namespace=${value}`]),
      (error: Error) =>
        error instanceof UsageError &&
        /--cluster-resource-namespace(: "Not_A_Namespace" is not a namespace name| is empty)/
          .test(error.message),
      value,
    );
  }
});
