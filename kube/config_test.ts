import assert from "node:assert/strict";
import { join } from "node:path";
import {
  KubeConfigError,
  loadInClusterConfig,
  loadKubeConfigFile,
  parseKubeConfigText,
} from "./config.ts";

const CA = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "kube-config-test-" });
}

Deno.test("in-cluster: server from the env, CA from the mount, token as a file", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(join(dir, "ca.crt"), CA);
    await Deno.writeTextFile(join(dir, "token"), "t1\n");
    const env = (name: string) =>
      ({ KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" })[name];
    const config = await loadInClusterConfig({ env, dir });
    assert.deepEqual(config, {
      server: "https://10.96.0.1:443",
      caPem: CA,
      tokenFile: join(dir, "token"),
    });
    const v6 = await loadInClusterConfig({
      env: (name) =>
        ({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "6443" })[name],
      dir,
    });
    assert.equal(v6.server, "https://[fd00::1]:6443");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("in-cluster: no env or no mount is a KubeConfigError naming what is missing", async () => {
  const dir = await tempDir();
  try {
    await assert.rejects(
      loadInClusterConfig({ env: () => undefined, dir }),
      (e) => e instanceof KubeConfigError && /KUBERNETES_SERVICE_HOST/.test(e.message),
    );
    await assert.rejects(
      loadInClusterConfig({
        env: (n) => ({ KUBERNETES_SERVICE_HOST: "h", KUBERNETES_SERVICE_PORT: "1" })[n],
        dir,
      }),
      (e) => e instanceof KubeConfigError && e.message.includes(dir) && e.cause instanceof Error,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: current context, inline data, files relative to the kubeconfig", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(join(dir, "ca.pem"), CA);
    await Deno.writeTextFile(join(dir, "client.pem"), "CERT");
    await Deno.writeTextFile(join(dir, "client.key"), "KEY");
    const path = join(dir, "config");
    // YAML as kubectl writes it.
    await Deno.writeTextFile(
      path,
      `apiVersion: v1
kind: Config
current-context: b
clusters:
- name: one
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: ${btoa(CA)}
- name: two
  cluster:
    server: https://example.invalid:443
    certificate-authority: ca.pem
    insecure-skip-tls-verify: true
users:
- name: tok
  user:
    token: abc
    as: system:serviceaccount:x:y
    as-groups: [g1, g2]
- name: cert
  user:
    client-certificate: client.pem
    client-key: client.key
- name: file
  user:
    tokenFile: token
contexts:
- name: a
  context: { cluster: one, user: tok }
- name: b
  context: { cluster: two, user: cert }
- name: c
  context: { cluster: one, user: file }
`,
    );
    assert.deepEqual(await loadKubeConfigFile(path), {
      server: "https://example.invalid:443",
      caPem: CA,
      insecureSkipTlsVerify: true,
      token: undefined,
      tokenFile: undefined,
      certPem: "CERT",
      keyPem: "KEY",
      impersonateUser: undefined,
      impersonateGroups: undefined,
    });
    const a = await loadKubeConfigFile(path, "a");
    assert.equal(a.server, "https://127.0.0.1:6443");
    assert.equal(a.caPem, CA);
    assert.equal(a.token, "abc");
    assert.equal(a.insecureSkipTlsVerify, false);
    assert.equal(a.impersonateUser, "system:serviceaccount:x:y");
    assert.deepEqual(a.impersonateGroups, ["g1", "g2"]);
    assert.equal((await loadKubeConfigFile(path, "c")).tokenFile, join(dir, "token"));
    await assert.rejects(
      loadKubeConfigFile(path, "zzz"),
      (e) => e instanceof KubeConfigError && /no context named "zzz"/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig: exec and auth-provider plugins are refused naming the field", async () => {
  const dir = await tempDir();
  try {
    for (const field of ["exec", "auth-provider"]) {
      const path = join(dir, field);
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          "current-context": "x",
          clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:1" } }],
          users: [{ name: "u", user: { [field]: { command: "aws" } } }],
          contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        }),
      );
      await assert.rejects(
        loadKubeConfigFile(path),
        (e) =>
          e instanceof KubeConfigError && e.message.includes(`users[u].user.${field}`) &&
          e.message.includes("not supported"),
      );
    }
    const proxied = join(dir, "proxied");
    await Deno.writeTextFile(
      proxied,
      JSON.stringify({
        "current-context": "x",
        clusters: [{
          name: "c",
          cluster: { server: "https://127.0.0.1:1", "proxy-url": "http://proxy:3128" },
        }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      }),
    );
    await assert.rejects(
      loadKubeConfigFile(proxied),
      (e) => e instanceof KubeConfigError && e.message.includes("clusters[c].cluster.proxy-url"),
    );
    await assert.rejects(
      loadKubeConfigFile(join(dir, "missing")),
      (e) => e instanceof KubeConfigError && e.cause instanceof Deno.errors.NotFound,
    );
    await assert.rejects(
      parseKubeConfigText("a: [", "bad"),
      (e) => e instanceof KubeConfigError && /^bad: not JSON or YAML/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
