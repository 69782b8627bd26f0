/**
 * Real Debian consumers read the rendered debian store with no CA flags. A Debian bookworm root
 * filesystem (debootstrap, cached; see `harness/debian_rootfs.ts`) with curl, openssl, python3,
 * ca-certificates and the distro JDK gets the store the driver renders for a SPIRE-like CA,
 * bind-mounted read-only at `/etc/ssl/certs`; inside it, with an empty environment, curl,
 * `openssl s_client -verify_return_error`, `openssl verify`, python3 urllib, a static Go
 * program (crypto/x509 SystemCertPool) and the JDK's default truststore (`$JAVA_HOME/lib/security/
 * cacerts` → `/etc/ssl/certs/java/cacerts`) each trust an HTTPS server on the host's loopback with
 * a certificate from that CA and refuse one from an unknown CA. Root only (mount namespaces,
 * chroot); needs debootstrap, Go and a javac on the host. In CI nothing is skipped.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DevCa } from "../x509/mod.ts";
import { AtomicWriter } from "../trust_store/mod.ts";
import { PayloadCache, storeHash } from "../csi/payload_cache.ts";
import { chrootCommand, debianRootfs } from "./harness/debian_rootfs.ts";
import { hasCommand, isCi, runCommand } from "./harness/mod.ts";

const TOOLS = ["debootstrap", "unshare", "chroot", "go", "javac"];
const ready = Deno.uid() === 0 && TOOLS.every(hasCommand);
const JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64";

const GO_CLIENT = `package main

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

func main() {
	if _, err := x509.SystemCertPool(); err != nil {
		fmt.Fprintln(os.Stderr, "SystemCertPool:", err)
		os.Exit(2)
	}
	resp, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
}
`;

const JAVA_CLIENT = `import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class TlsGet {
  public static void main(String[] args) throws Exception {
    if (System.getProperty("javax.net.ssl.trustStore") != null) throw new IllegalStateException();
    HttpResponse<String> r = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
    System.out.println(r.statusCode());
  }
}
`;

/** An HTTPS server on 127.0.0.1 with a leaf issued by `ca`. */
async function serve(ca: DevCa, name: string) {
  const leaf = await ca.issue({
    spiffeId: `spiffe://example.org/${name}`,
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    ttlMs: 3_600_000,
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: leaf.certPem, key: leaf.keyPem, onListen() {} },
    () => new Response(`hello from ${name}\n`),
  );
  return { server, url: `https://127.0.0.1:${server.addr.port}/`, leafPem: leaf.certPem };
}

Deno.test({
  name:
    "Debian's curl, openssl, python3, Go and distro JDK trust the mounted debian store, and only it",
  ignore: !ready && !isCi(),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const missing = TOOLS.filter((c) => !hasCommand(c));
    assert.deepEqual(missing, [], `install ${missing.join(", ")} (and run as root)`);
    assert.equal(Deno.uid(), 0, "runs as root (mount namespaces, chroot)");
    const rootfs = await debianRootfs(undefined, (line) => console.log(line));
    if (rootfs.built) console.log(`rootfs built in ${rootfs.buildSeconds} s at ${rootfs.dir}`);
    // Debian's JDK reads its default truststore through this link, into the mounted store.
    assert.equal(
      await Deno.readLink(join(rootfs.dir, JAVA_HOME, "lib/security/cacerts")),
      "/etc/ssl/certs/java/cacerts",
    );

    const spire = await DevCa.create(1);
    const unknown = await DevCa.create(2);
    const work = await Deno.makeTempDir({ prefix: "debian_userland_" });
    const store = join(work, "store");
    const bin = join(work, "bin");
    await Deno.mkdir(store);
    await Deno.mkdir(bin);
    const trusted = await serve(spire, "trusted");
    const untrusted = await serve(unknown, "untrusted");
    try {
      // The store as the driver renders and writes it.
      const sources = [{ name: "Secret spire/spire-bundle key ca.crt", text: spire.certPem }];
      const payload = await new PayloadCache({ baseRoots: { kind: "none" } })
        .get(storeHash("debian", sources), "debian", sources);
      await new AtomicWriter(store, { fsync: false }).write(payload);

      await Deno.writeTextFile(join(work, "main.go"), GO_CLIENT);
      await runCommand(["go", "build", "-o", join(bin, "tlsget"), join(work, "main.go")], {
        env: { CGO_ENABLED: "0" },
        cwd: work,
        check: true,
      });
      await Deno.writeTextFile(join(work, "TlsGet.java"), JAVA_CLIENT);
      await runCommand(["javac", "--release", "17", "-d", bin, join(work, "TlsGet.java")], {
        check: true,
      });
      await Deno.writeTextFile(join(bin, "trusted.pem"), trusted.leafPem);
      await Deno.writeTextFile(join(bin, "untrusted.pem"), untrusted.leafPem);

      const binds = [{ source: store, target: "/etc/ssl/certs" }, { source: bin, target: "/mnt" }];
      const inside = (argv: string[]) => runCommand(chrootCommand(rootfs.dir, binds, argv));

      const clients: Record<string, (url: string, leaf: string) => string[]> = {
        curl: (url) => ["/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url],
        "openssl s_client": (url) => [
          "/bin/sh",
          "-c",
          `/usr/bin/openssl s_client -connect ${new URL(url).host} -verify_return_error ` +
          `-brief </dev/null`,
        ],
        "openssl verify": (_url, leaf) => ["/usr/bin/openssl", "verify", `/mnt/${leaf}.pem`],
        "python3 urllib": (url) => [
          "/usr/bin/python3",
          "-c",
          "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)",
          url,
        ],
        "Go (static, SystemCertPool)": (url) => ["/mnt/tlsget", url],
        "Debian JDK 17 (default truststore)": (url) => [
          `${JAVA_HOME}/bin/java`,
          "-cp",
          "/mnt",
          "TlsGet",
          url,
        ],
      };
      for (const [client, argv] of Object.entries(clients)) {
        await t.step(`${client} trusts the SPIRE-like CA and refuses an unknown one`, async () => {
          const ok = await inside(argv(trusted.url, "trusted"));
          const bad = await inside(argv(untrusted.url, "untrusted"));
          assert.equal(
            ok.code,
            0,
            `${client} refused the trusted server:\n${ok.stdout}${ok.stderr}`,
          );
          assert.match(ok.stdout + ok.stderr, /^200$|^Verification: OK$|: OK$/m, ok.stdout);
          const log = Deno.env.get("DEBIAN_USERLAND_LOG");
          if (log) {
            const text = `${client}\n${ok.stdout}${ok.stderr}\n${bad.stdout}${bad.stderr}\n`;
            await Deno.writeTextFile(log, text, { append: true });
          }
          assert.notEqual(bad.code, 0, `${client} accepted the unknown CA:\n${bad.stdout}`);
          assert.match(
            bad.stdout + bad.stderr,
            /certificate|verif|PKIX|unknown authority|issuer/i,
            `${client} failed for another reason:\n${bad.stdout}${bad.stderr}`,
          );
        });
      }
    } finally {
      await trusted.server.shutdown();
      await untrusted.server.shutdown();
      await Deno.remove(work, { recursive: true });
    }
  },
});
