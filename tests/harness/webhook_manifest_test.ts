import assert from "node:assert/strict";
import { join } from "node:path";
import {
  overrideFlags,
  parseMemoryQuantity,
  readWebhookContainer,
  webhookConfigurationForUrl,
  WebhookManifestError,
} from "./webhook_manifest.ts";

Deno.test("parseMemoryQuantity: binary and decimal suffixes, plain bytes, refusals", () => {
  assert.equal(parseMemoryQuantity("384Mi"), 384 * 1024 * 1024);
  assert.equal(parseMemoryQuantity("1Gi"), 2 ** 30);
  assert.equal(parseMemoryQuantity("64Ki"), 65536);
  assert.equal(parseMemoryQuantity("1.5Gi"), 1.5 * 2 ** 30);
  assert.equal(parseMemoryQuantity("128M"), 128e6);
  assert.equal(parseMemoryQuantity("1000"), 1000);
  for (const bad of ["", "12Mb", "-1Mi", "100m", "1e3", "Mi"]) {
    assert.throws(() => parseMemoryQuantity(bad), WebhookManifestError, bad);
  }
});

Deno.test("overrideFlags replaces, drops and appends by flag name", () => {
  assert.deepEqual(
    overrideFlags(["--port=8443", "--a=1", "--cert-dir=/run", "positional"], {
      port: "1",
      "cert-dir": null,
      kubeconfig: "/k",
      gone: null,
    }),
    ["--port=1", "--a=1", "positional", "--kubeconfig=/k"],
  );
});

Deno.test("readWebhookContainer reads the shipped Deployment's webhook container", () => {
  const spec = readWebhookContainer();
  assert.equal(spec.memoryLimitBytes, parseMemoryQuantity(spec.memoryLimit));
  assert.ok(spec.args.some((a) => a.startsWith("--cert-dir=")), spec.args.join(" "));
  for (const value of Object.values(spec.env)) assert.equal(typeof value, "string");
});

Deno.test("readWebhookContainer refuses a container without a limit or with valueFrom", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = (container: unknown) => {
      const path = join(dir, "d.yaml");
      Deno.writeTextFileSync(
        path,
        JSON.stringify({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "d" },
          spec: {
            selector: {},
            template: { spec: { containers: [container] } },
          },
        }),
      );
      return path;
    };
    assert.throws(
      () => readWebhookContainer(write({ name: "webhook", image: "i" })),
      /no limits\.memory/,
    );
    assert.throws(
      () =>
        readWebhookContainer(write({
          name: "webhook",
          image: "i",
          resources: { limits: { memory: "1Mi" } },
          env: [{ name: "X", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }],
        })),
      /env X is not a plain value/,
    );
    assert.throws(
      () => readWebhookContainer(write({ name: "other", image: "i" })),
      /no Deployment/,
    );
    assert.deepEqual(
      readWebhookContainer(write({
        name: "webhook",
        image: "i",
        args: ["--x=1"],
        resources: { limits: { memory: "2Mi" } },
        env: [{ name: "DENO_V8_FLAGS", value: "--max-old-space-size=100" }],
      })),
      {
        args: ["--x=1"],
        env: { DENO_V8_FLAGS: "--max-old-space-size=100" },
        memoryLimit: "2Mi",
        memoryLimitBytes: 2 * 1024 * 1024,
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("webhookConfigurationForUrl keeps the manifest's settings, swaps the Service for a URL", () => {
  const configuration = webhookConfigurationForUrl("https://localhost:1/mutate", "Q0E=");
  const webhook = configuration.webhooks![0];
  assert.deepEqual(webhook.clientConfig, { url: "https://localhost:1/mutate", caBundle: "Q0E=" });
  assert.equal(webhook.failurePolicy, "Fail");
  assert.ok((webhook.timeoutSeconds ?? 0) > 0);
  assert.deepEqual(webhook.objectSelector?.matchLabels, {
    "spiffe.io/spire-managed-identity": "true",
  });
  assert.ok(webhook.namespaceSelector?.matchExpressions?.length);
  assert.throws(
    () => webhookConfigurationForUrl("https://localhost:1/other", "Q0E="),
    /serves \/mutate/,
  );
});
