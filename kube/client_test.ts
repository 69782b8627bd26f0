/**
 * The client against a real kube-apiserver (tests/harness): every call the programs make, the
 * Status body's reason and message in {@link KubeApiError}, a rotated token file, client
 * certificates and impersonation from a kubeconfig, watches with bookmarks, and the informer.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { needsTools, startKubeApiServer, waitFor } from "../tests/harness/mod.ts";
import { describeApiError } from "./object_watcher.ts";
import { KubeApiError } from "./api_error.ts";
import { KubeClient, resourcePath, TOKEN_REREAD_MS, type WatchEventType } from "./client.ts";
import { loadKubeConfigFile } from "./config.ts";
import { Informer } from "./informer.ts";

const cm = (name: string) =>
  resourcePath({ group: "", version: "v1", namespace: "default", plural: "configmaps", name });
const cms = resourcePath({ group: "", version: "v1", namespace: "default", plural: "configmaps" });

async function refused(call: Promise<unknown>): Promise<KubeApiError> {
  try {
    await call;
  } catch (error) {
    if (error instanceof KubeApiError) return error;
    throw error;
  }
  throw new Error("the call succeeded");
}

Deno.test({
  name: "kube client on a real apiserver: CRUD, patches, apply conflicts, errors, auth, watch",
  ...needsTools(["etcd", "kube-apiserver", "kubectl"]),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const kube = await startKubeApiServer();
    const client = kube.client;
    try {
      await t.step("get of a missing object: 404 NotFound with the server's message", async () => {
        const error = await refused(client.get(cm("nope")));
        assert.equal(error.code, 404);
        assert.equal(error.reason, "NotFound");
        assert.equal(error.statusMessage, 'configmaps "nope" not found');
        assert.equal(describeApiError(error), 'HTTP 404: configmaps "nope" not found');
      });

      await t.step("create, 409 on a second create, list by field and label", async () => {
        const body = (name: string, team: string) => ({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name, labels: { team } },
          data: { k: name },
        });
        const made = await client.create<{ metadata: { uid: string } }>(cms, body("a", "x"));
        assert.ok(made.metadata.uid);
        await client.create(cms, body("b", "y"));
        const again = await refused(client.create(cms, body("a", "x")));
        assert.equal(again.code, 409);
        assert.equal(again.reason, "AlreadyExists");
        const names = async (options: { fieldSelector?: string; labelSelector?: string }) =>
          (await client.list<{ metadata: { name: string } }>(cms, options)).items
            .map((i) => i.metadata.name).sort();
        assert.deepEqual(await names({ fieldSelector: "metadata.name=b" }), ["b"]);
        assert.deepEqual(await names({ labelSelector: "team=x" }), ["a"]);
        assert.deepEqual(await names({}), ["a", "b"]);
        const list = await client.list(cms);
        assert.match(list.metadata?.resourceVersion ?? "", /^\d+$/);
      });

      await t.step("merge patch, JSON patch, 422 on a bad JSON patch", async () => {
        await client.patch(cm("a"), "merge", { data: { m: "1" } });
        await client.patch(cm("a"), "json", [{ op: "add", path: "/data/j", value: "2" }]);
        const got = await client.get<{ data: Record<string, string> }>(cm("a"));
        assert.deepEqual(got.data, { k: "a", m: "1", j: "2" });
        const bad = await refused(
          client.patch(cm("a"), "json", [{ op: "test", path: "/data/k", value: "other" }]),
        );
        assert.equal(bad.code, 422);
      });

      await t.step(
        "apply: create, conflict without force (409), taken over with force",
        async () => {
          const applied = (value: string) => ({
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { name: "applied", namespace: "default" },
            data: { owned: value },
          });
          await client.apply(cm("applied"), applied("one"), {
            fieldManager: "first",
            force: false,
          });
          const conflict = await refused(
            client.apply(cm("applied"), applied("two"), { fieldManager: "second", force: false }),
          );
          assert.equal(conflict.code, 409);
          assert.equal(conflict.reason, "Conflict");
          assert.match(conflict.statusMessage, /first/);
          const forced = await client.apply<{ data: Record<string, string> }>(
            cm("applied"),
            applied("two"),
            { fieldManager: "second", force: true },
          );
          assert.deepEqual(forced.data, { owned: "two" });
        },
      );

      await t.step("403 as an impersonated user carries the server's answer", async () => {
        const nobody = new KubeClient({ ...client.config, impersonateUser: "nobody" });
        try {
          const error = await refused(nobody.list(cms));
          assert.equal(error.code, 403);
          assert.equal(error.reason, "Forbidden");
          assert.match(
            describeApiError(error),
            /^HTTP 403: configmaps is forbidden: User "nobody"/,
          );
        } finally {
          nobody.close();
        }
      });

      await t.step("client certificate from the kubeconfig's admin-cert context", async () => {
        const config = await loadKubeConfigFile(kube.kubeconfigPath, "admin-cert");
        assert.ok(config.certPem && config.keyPem && config.token === undefined);
        const cert = new KubeClient(config);
        try {
          assert.equal((await cert.get<{ data: { k: string } }>(cm("a"))).data.k, "a");
        } finally {
          cert.close();
        }
      });

      await t.step("a rotated token file is read again after a minute", async () => {
        const dir = await Deno.makeTempDir();
        const tokenFile = join(dir, "token");
        await Deno.writeTextFile(tokenFile, "not-a-token\n");
        let now = 0;
        const rotating = new KubeClient(
          { server: kube.url, caPem: kube.caPem, tokenFile },
          { now: () => now },
        );
        try {
          assert.equal((await refused(rotating.get(cm("a")))).code, 401);
          await Deno.writeTextFile(tokenFile, `${kube.token}\n`);
          // Not yet re-read: still the old token.
          now += TOKEN_REREAD_MS - 1;
          assert.equal((await refused(rotating.get(cm("a")))).code, 401);
          now += 1;
          assert.equal((await rotating.get<{ data: { k: string } }>(cm("a"))).data.k, "a");
        } finally {
          rotating.close();
          await Deno.remove(dir, { recursive: true });
        }
      });

      await t.step(
        "watch from a list's resourceVersion: events in order, bookmarks, abort",
        async () => {
          const rv = (await client.list(cms, { fieldSelector: "metadata.name=w" })).metadata
            ?.resourceVersion;
          const seen: [WatchEventType, string][] = [];
          const abort = new AbortController();
          const done = client.watch(
            cms,
            { fieldSelector: "metadata.name=w", resourceVersion: rv, signal: abort.signal },
            (type, object) => {
              const data = (object as { data?: Record<string, string> }).data;
              if (type !== "BOOKMARK") seen.push([type, data?.v ?? ""]);
            },
          ).catch((error) => error as Error);
          await client.create(cms, { metadata: { name: "w" }, data: { v: "1" } });
          await client.patch(cm("w"), "merge", { data: { v: "2" } });
          await client.create(cms, { metadata: { name: "other" }, data: { v: "x" } });
          await waitFor("two watch events", () => seen.length >= 2, { timeoutMs: 10_000 });
          abort.abort();
          const ended = await done;
          assert.ok(ended === undefined || ended.name === "AbortError", String(ended));
          assert.deepEqual(seen, [["ADDED", "1"], ["MODIFIED", "2"]]);
        },
      );

      await t.step("a watch that the server ends resolves; a refused watch throws", async () => {
        const started = Date.now();
        await client.watch(cms, { timeoutSeconds: 1 }, () => {});
        assert.ok(Date.now() - started < 10_000);
        const nobody = new KubeClient({ ...client.config, impersonateUser: "nobody" });
        try {
          assert.equal((await refused(nobody.watch(cms, {}, () => {}))).code, 403);
        } finally {
          nobody.close();
        }
      });

      await t.step("informer: add, update, delete; list() follows", async () => {
        const events: string[] = [];
        const informer = new Informer<{ metadata: { name: string } }>(client, cms, {
          labelSelector: "inf=yes",
        });
        for (const e of ["add", "update", "delete"] as const) {
          informer.on(e, (o) => events.push(`${e} ${o.metadata.name}`));
        }
        await client.create(cms, { metadata: { name: "i1", labels: { inf: "yes" } } });
        await informer.start();
        assert.deepEqual(events, ["add i1"]);
        await client.create(cms, { metadata: { name: "i2", labels: { inf: "yes" } } });
        await client.patch(cm("i1"), "merge", { data: { x: "1" } });
        await kube.kubectl(["delete", "configmap", "i2", "-n", "default"], { check: true });
        await waitFor("four informer events", () => events.length >= 4, { timeoutMs: 10_000 });
        assert.deepEqual(events, ["add i1", "add i2", "update i1", "delete i2"]);
        assert.deepEqual(informer.list().map((o) => o.metadata.name), ["i1"]);
        await informer.stop();
      });

      await t.step("informer: a list in pages delivers every object, transformed", async () => {
        for (let i = 0; i < 7; i++) {
          await client.create(cms, {
            metadata: { name: `p${i}`, labels: { paged: "yes" } },
            data: { big: "x".repeat(1000) },
          });
        }
        const page = await client.list(cms, { labelSelector: "paged=yes", limit: 3 });
        assert.equal(page.items.length, 3);
        assert.ok(page.metadata?.continue, "a page of 3 out of 7 has a continue token");
        const kept: unknown[] = [];
        const informer = new Informer<{ metadata: { name: string }; size: number }>(client, cms, {
          labelSelector: "paged=yes",
          pageSize: 3,
          transform: (o) => {
            const { name, resourceVersion } = o.metadata as Record<string, string>;
            return { metadata: { name, resourceVersion }, size: JSON.stringify(o).length };
          },
        });
        informer.on("add", (o) => kept.push(o));
        await informer.start();
        await informer.stop();
        assert.deepEqual(
          informer.list().map((o) => o.metadata.name).sort(),
          ["p0", "p1", "p2", "p3", "p4", "p5", "p6"],
        );
        assert.equal(kept.length, 7);
        assert.ok(informer.list().every((o) => o.size > 1000 && !("data" in o)));
      });
    } finally {
      client.close();
      await kube.stop();
    }
  },
});
