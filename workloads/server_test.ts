import assert from "node:assert/strict";
import { join } from "node:path";
import { TrustSource } from "../spire/mod.ts";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { main as clientMain, parseServerAddress, requestOnce } from "./client.ts";
import { main as serverMain, startServer } from "./server.ts";

Deno.test({
  name: "mTLS: only the required client SPIFFE ID gets an answer",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "spire-mtls-test-" });
    const ca = await DevCa.create();
    const issue = (id: string, dns?: string[]) =>
      ca.issue({ spiffeId: `spiffe://example.org/workload/${id}`, dnsNames: dns, ttlMs: 60_000 });
    const serverSvid = await issue("server", ["server-service"]);
    await writeSvidFiles(join(root, "server"), { ...serverSvid, bundlePem: ca.certPem });
    const server = await startServer({
      certDir: join(root, "server"),
      port: 0,
      hostname: "127.0.0.1",
      logRotations: false,
      requireClient: { id: "spiffe://example.org/workload/client" },
    });
    try {
      const url = new URL(`https://127.0.0.1:${server.port}/`);
      const trust = new TrustSource(join(root, "server", "svid_bundle.pem"));
      const client = await issue("client");
      const good = await requestOnce({
        url,
        serverName: "server-service",
        trust,
        clientCertificate: { cert: client.certPem, key: client.keyPem },
      });
      assert.ok(good.ok, good.ok ? "" : good.error);
      assert.match(good.body, /to spiffe:\/\/example.org\/workload\/client/);

      const intruder = await issue("intruder");
      const denied = await requestOnce({
        url,
        serverName: "server-service",
        trust,
        clientCertificate: { cert: intruder.certPem, key: intruder.keyPem },
      });
      assert.equal(denied.ok, false);
      assert.match(denied.ok ? "" : denied.error, /HTTP 403.*intruder is not authorised/);

      const anonymous = await requestOnce({ url, serverName: "server-service", trust });
      assert.equal(anonymous.ok, false);

      const wrongName = await requestOnce({
        url,
        serverName: "other-service",
        trust,
        clientCertificate: { cert: client.certPem, key: client.keyPem },
      });
      assert.match(wrongName.ok ? "" : wrongName.error, /other-service/);
    } finally {
      await server.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("client --count logs the report on stderr with Go's log prefix; a missing trust file is one clear line", async () => {
  const root = await Deno.makeTempDir({ prefix: "spire-client-test-" });
  const ca = await DevCa.create();
  const svid = await ca.issue({
    spiffeId: "spiffe://example.org/workload/server",
    dnsNames: ["server-service"],
    ttlMs: 60_000,
  });
  await writeSvidFiles(root, { ...svid, bundlePem: ca.certPem });
  const server = await startServer({
    certDir: root,
    port: 0,
    hostname: "127.0.0.1",
    logRotations: false,
  });
  // Go's log package writes to stderr: console.error is where the client's lines go.
  const logged: string[] = [];
  const printed: string[] = [];
  const original = { log: console.log, error: console.error };
  console.error = (line: string) => logged.push(line);
  console.log = (line: string) => printed.push(line);
  try {
    const args = [
      `--cert-dir=${root}`,
      `--server-address=127.0.0.1:${server.port}`,
      "--server-name=server-service",
      "--interval=10ms",
    ];
    assert.equal(await clientMain([...args, "--count=2"]), 0);
    assert.equal(
      await clientMain([
        ...args,
        "--count=1",
        "--system-certs=true",
        `--system-ca-file=${root}/missing.crt`,
      ]),
      1,
    );
  } finally {
    console.log = original.log;
    console.error = original.error;
    await server.close();
    await Deno.remove(root, { recursive: true });
  }
  assert.deepEqual(printed, []);
  const PREFIX = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /;
  for (const line of logged) assert.match(line, PREFIX);
  const messages = logged.map((line) => line.replace(PREFIX, ""));
  assert.equal(messages[0], "Using SPIRE trust store");
  assert.equal(messages.filter((m) => m === "Certificate Information:").length, 2);
  assert.deepEqual(messages.filter((m) => m.startsWith("Making request #")), [
    "Making request #1",
    "Making request #2",
    "Making request #1",
  ]);
  assert.deepEqual(messages.slice(-3, -1), [
    "Using system certificate trust store",
    "Making request #1",
  ]);
  const failure = messages.at(-1)!;
  assert.match(
    failure,
    /^Request to https:\/\/127\.0\.0\.1:\d+\/ failed: trust file .*missing\.crt/,
  );
  assert.equal(failure.split("\n").length, 1);
});

Deno.test("flags: --help answers 0, bad values answer 2 with the flag named", async () => {
  const errors: string[] = [];
  const log = console.log, error = console.error;
  console.log = () => {};
  console.error = (line: string) => errors.push(line);
  try {
    assert.equal(await clientMain(["--help"]), 0);
    assert.equal(await serverMain(["--help"]), 0);
    assert.equal(await clientMain(["--interval=soon"]), 2);
    assert.equal(await clientMain(["--system-certs=maybe"]), 2);
    assert.equal(await serverMain(["--port=99999"]), 2);
    assert.equal(await serverMain(["--require-client-id=http://x"]), 2);
  } finally {
    console.log = log;
    console.error = error;
  }
  assert.match(errors.join("\n"), /--interval/);
  assert.match(errors.join("\n"), /--system-certs/);
  assert.match(errors.join("\n"), /--port/);
  assert.match(errors.join("\n"), /scheme must be spiffe/);
  assert.equal(parseServerAddress("server-service:8443").href, "https://server-service:8443/");
  assert.throws(() => parseServerAddress("http://x"), /only https/);
});
