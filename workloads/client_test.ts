import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DevCa, writeSvidFiles } from "../x509/mod.ts";
import { runClient } from "./client.ts";
import { goLogPrefix, rfc3339 } from "./cert_info.ts";
import { x509 } from "../x509/mod.ts";
import { type RunningServer, startServer } from "./server.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Go's `log.LstdFlags` prefix and the message after it. */
const LINE = /^(\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d) (.*)$/s;
/** The last report line for a 60 s SVID fetched right away. */
const REMAINING = /^ {2}Time until expiration: (\d+s|1m0s)$/;

interface Fixture {
  root: string;
  server: RunningServer;
  notBefore: string;
  notAfter: string;
  close(): Promise<void>;
}

/** A dev CA, the server's SVID files in `root/server`, the example server on loopback. */
async function fixture(): Promise<Fixture> {
  const root = await Deno.makeTempDir({ prefix: "spire-client-log-test-" });
  const ca = await DevCa.create();
  const svid = await ca.issue({
    spiffeId: "spiffe://example.org/workload/server",
    dnsNames: ["server-service"],
    ttlMs: 60_000,
  });
  await writeSvidFiles(join(root, "server"), { ...svid, bundlePem: ca.certPem });
  await Deno.writeTextFile(join(root, "ca-certificates.crt"), ca.certPem);
  const server = await startServer({
    certDir: join(root, "server"),
    port: 0,
    hostname: "127.0.0.1",
    logRotations: false,
  });
  const cert = new x509.X509Certificate(svid.certPem);
  return {
    root,
    server,
    notBefore: rfc3339(cert.notBefore),
    notAfter: rfc3339(cert.notAfter),
    close: async () => {
      await server.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** Splits logged lines into prefix and message; every prefix lies between `from` and `to`. */
function parse(lines: string[], from: string, to: string): string[] {
  return lines.map((line) => {
    const match = LINE.exec(line);
    assert.ok(match, `no Go log prefix: ${JSON.stringify(line)}`);
    assert.ok(match[1] >= from && match[1] <= to, `${match[1]} not within ${from} … ${to}`);
    return match[2];
  });
}

/** The five report lines of one request to the fixture's server. */
function report(f: Fixture): Array<string | RegExp> {
  return [
    "Certificate Information:",
    "  Subject: CN=server-service, O=SPIRE, C=US",
    `  Not Before: ${f.notBefore}`,
    `  Not After: ${f.notAfter}`,
    REMAINING,
  ];
}

function assertLines(messages: string[], expected: Array<string | RegExp>): void {
  assert.equal(messages.length, expected.length, messages.join("\n"));
  expected.forEach((want, i) => {
    if (typeof want === "string") assert.equal(messages[i], want);
    else assert.match(messages[i], want);
  });
}

Deno.test({
  name: "each mode logs its start line, Making request #N and the report, every line prefixed",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const f = await fixture();
    try {
      for (
        const [systemCerts, trustFile, start] of [
          [false, join(f.root, "server", "svid_bundle.pem"), "Using SPIRE trust store"],
          [true, join(f.root, "ca-certificates.crt"), "Using system certificate trust store"],
        ] as const
      ) {
        const lines: string[] = [];
        const from = goLogPrefix().trimEnd();
        const stats = await runClient({
          url: new URL(`https://127.0.0.1:${f.server.port}/`),
          serverName: "server-service",
          trustFile,
          systemCerts,
          intervalMs: 10,
          count: 2,
          print: (line) => lines.push(line),
        });
        const to = goLogPrefix().trimEnd();
        assert.equal(stats.ok, 2);
        assertLines(parse(lines, from, to), [
          start,
          "Making request #1",
          ...report(f),
          "Making request #2",
          ...report(f),
        ]);
      }
    } finally {
      await f.close();
    }
  },
});

Deno.test({
  name: "a failed request is one prefixed line after its Making request line",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const lines: string[] = [];
    const from = goLogPrefix().trimEnd();
    const stats = await runClient({
      url: new URL("https://127.0.0.1:1/"),
      trustFile: "/nonexistent/ca-certificates.crt",
      systemCerts: true,
      intervalMs: 10,
      count: 2,
      print: (line) => lines.push(line),
    });
    assert.equal(stats.failed, 2);
    const failed =
      /^Request to https:\/\/127\.0\.0\.1:1\/ failed: trust file .*ca-certificates\.crt/;
    assertLines(parse(lines, from, goLogPrefix().trimEnd()), [
      "Using system certificate trust store",
      "Making request #1",
      failed,
      "Making request #2",
      failed,
    ]);
  },
});

Deno.test({
  name: "without a mode the client logs no start line",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const lines: string[] = [];
    const from = goLogPrefix().trimEnd();
    await runClient({
      url: new URL("https://127.0.0.1:1/"),
      trustFile: "/nonexistent/ca-certificates.crt",
      intervalMs: 10,
      count: 1,
      print: (line) => lines.push(line),
    });
    assertLines(parse(lines, from, goLogPrefix().trimEnd()), [
      "Making request #1",
      /^Request to https:\/\/127\.0\.0\.1:1\/ failed: /,
    ]);
  },
});

/** `YYYY/MM/DD HH:MM:SS` of `date` in `timeZone`, independent of this process's TZ. */
function wallClock(date: Date, timeZone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    }).formatToParts(date).map((p) => [p.type, p.value]),
  );
  return `${parts.year}/${parts.month}/${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

Deno.test({
  name: "the client program logs on stderr in the local time of its TZ (--system-certs=true)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const f = await fixture();
    try {
      const tz = "Asia/Kathmandu"; // UTC+05:45 all year: never the UTC wall clock
      const from = new Date(Math.floor(Date.now() / 1000) * 1000);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "workloads/client.ts",
          `--cert-dir=${join(f.root, "no-client-svid")}`,
          "--system-certs=true",
          `--system-ca-file=${join(f.root, "ca-certificates.crt")}`,
          `--server-address=127.0.0.1:${f.server.port}`,
          "--server-name=server-service",
          "--interval=10ms",
          "--count=2",
        ],
        cwd: ROOT,
        env: { TZ: tz, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const to = new Date();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.equal(new TextDecoder().decode(out.stdout), "");
      const lines = stderr.trimEnd().split("\n");
      assertLines(parse(lines, wallClock(from, tz), wallClock(to, tz)), [
        "Using system certificate trust store",
        "Making request #1",
        ...report(f),
        "Making request #2",
        ...report(f),
      ]);
      const utc = wallClock(to, "UTC");
      assert.ok(lines.every((line) => !line.startsWith(utc.slice(0, 13))), "not UTC");
    } finally {
      await f.close();
    }
  },
});
