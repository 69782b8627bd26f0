/**
 * Runs p11-kit's `trust extract --format=openssl-bundle` over anchors of the test's choosing
 * without touching the host's trust: a private copy of the p11-kit trust module is configured
 * through a user module config (`$HOME/.config/pkcs11/modules/`) in a temporary HOME, with
 * `x-init-reserved: paths=<dir>`, and the anchors sit in `<dir>/anchors/` (p11-kit trusts the
 * certificates of an `anchors` directory). The copy is needed because p11-kit loads a module
 * path once ("duplicate module, using previous"), and p11-kit skips user configs when running
 * as root, so as root the command runs as `nobody` through `setpriv`. The host's own anchors are
 * extracted too; callers pick their certificates out by DER.
 *
 * @module
 */

import { join } from "node:path";
import { run } from "./run.ts";

const MODULE_PATHS = [
  "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-trust.so",
  "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-trust.so",
  "/usr/lib64/pkcs11/p11-kit-trust.so",
  "/usr/lib/pkcs11/p11-kit-trust.so",
];

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/**
 * Extracts an OpenSSL bundle from p11-kit with `anchors` (PEM texts) added as anchors.
 *
 * @returns the bundle text p11-kit wrote
 * @throws {Error} when p11-kit's trust module or `trust` is missing, or the extract fails
 */
export async function p11kitOpensslBundle(anchors: readonly string[]): Promise<string> {
  let module: string | undefined;
  for (const p of MODULE_PATHS) if (await exists(p)) module = p;
  if (module === undefined) {
    throw new Error(`p11-kit trust module not found in ${MODULE_PATHS.join(", ")}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "p11kit-" });
  try {
    await Deno.chmod(dir, 0o777);
    const anchorsDir = join(dir, "src", "anchors");
    const modules = join(dir, "home", ".config", "pkcs11", "modules");
    await Deno.mkdir(anchorsDir, { recursive: true });
    await Deno.mkdir(modules, { recursive: true });
    for (const [i, pem] of anchors.entries()) {
      await Deno.writeTextFile(join(anchorsDir, `anchor-${i}.pem`), pem);
    }
    await Deno.copyFile(module, join(dir, "trust.so"));
    await Deno.writeTextFile(
      join(modules, "spire-cacerts-test.module"),
      `module: ${join(dir, "trust.so")}\ntrust-policy: yes\n` +
        `x-init-reserved: paths=${join(dir, "src")}\n`,
    );
    await run("chmod", ["-R", "a+rX", dir]);
    const out = join(dir, "bundle.crt");
    const extract = [
      "env",
      `HOME=${join(dir, "home")}`,
      "trust",
      "extract",
      "--format=openssl-bundle",
      "--filter=ca-anchors",
      "--comment",
      out,
    ];
    const r = Deno.uid() === 0
      ? await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", ...extract])
      : await run(extract[0], extract.slice(1));
    if (r.code !== 0) throw new Error(`trust extract failed: ${r.stderr}${r.stdout}`);
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
