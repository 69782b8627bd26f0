import assert from "node:assert/strict";
import { DRIVER_NAME } from "../../api/mod.ts";
import { randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { loadAllYaml } from "@kubernetes/client-node";
import { isCi, toolPath, toolsBinDir } from "./tools.ts";
import { freePorts, hasCommand, runCommand, startProcess, waitFor } from "./process.ts";
import { writeLayer } from "./oci_archive.ts";
import {
  buildLocalImages,
  COREDNS_IMAGE,
  imagesCacheDir,
  importImages,
  listContainerdImages,
  type LocalImage,
  manifestImageRefs,
  needsImageTools,
  PAUSE_IMAGE,
  sha256File,
} from "./images.ts";
import { startDriverProcess, writeUnusedKubeconfig } from "./driver_process.ts";

const MANIFESTS = fileURLToPath(new URL("../../manifests", import.meta.url));

async function digestOf(path: string): Promise<string> {
  return `sha256:${await sha256File(path)}`;
}

/** One line of `tar -tv --numeric-owner`: type, mode bits, owner, path and link target. */
interface Listed {
  type: string;
  executable: boolean;
  uid: number;
  path: string;
  link?: string;
}

async function listTar(path: string): Promise<Listed[]> {
  const out = await runCommand(["tar", "-tvf", path, "--numeric-owner"], { check: true });
  return out.stdout.trim().split("\n").map((line) => {
    const match = /^(\S)(\S{9})\s+(\d+)\/\d+\s+\d+\s+\S+\s+\S+\s+(.+?)(?: -> (.+))?$/.exec(line);
    assert.ok(match, `unparsable tar listing line: ${line}`);
    return {
      type: match[1],
      executable: /x/.test(match[2]),
      uid: Number(match[3]),
      path: "/" + match[4].replace(/\/$/, ""),
      link: match[5],
    };
  });
}

Deno.test("oci_archive: layers are byte-for-byte reproducible and GNU tar reads them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "oci-layer-" });
  try {
    const source = join(dir, "source.bin");
    await Deno.writeFile(source, new Uint8Array(randomBytes(70_000)));
    const longPath = "/opt/" + "d".repeat(60) + "/" + "f".repeat(70) + ".txt";
    const entries = [
      { path: "/bin/tool", type: "file" as const, mode: 0o755, source },
      {
        path: "/etc/passwd",
        type: "file" as const,
        mode: 0o644,
        data: new TextEncoder().encode("root:x:0:0::/:/x\n"),
      },
      { path: "/tmp", type: "dir" as const, mode: 0o1777 },
      { path: "/usr/local/bin/tool", type: "symlink" as const, mode: 0o777, linkname: "/bin/tool" },
      {
        path: longPath,
        type: "file" as const,
        mode: 0o600,
        uid: 1000,
        gid: 1000,
        data: new Uint8Array([1, 2, 3]),
      },
      {
        path: "/bin/capable",
        type: "file" as const,
        mode: 0o755,
        source,
        // cap_net_bind_service=ep (VFS_CAP_REVISION_2 | EFFECTIVE, permitted bit 10)
        xattrs: {
          "security.capability": new Uint8Array([
            1,
            0,
            0,
            2,
            0,
            4,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
          ]),
        },
      },
    ];
    const a = await writeLayer(entries, join(dir, "a.tar"));
    const b = await writeLayer([...entries].reverse(), join(dir, "b.tar"));
    assert.equal(a.digest, b.digest, "entry order must not change the layer");
    assert.equal(a.digest, await digestOf(join(dir, "a.tar")));
    assert.equal(a.size, (await Deno.stat(join(dir, "a.tar"))).size);

    const listed = await listTar(a.path);
    const paths = listed.map((l) => l.path);
    assert.ok(paths.includes("/usr/local"), "parent directories are added");
    assert.deepEqual(paths, [...paths].sort(), "entries are sorted");
    assert.equal(listed.find((l) => l.path === longPath)?.uid, 1000, "PAX path keeps long names");

    const out = join(dir, "out");
    await Deno.mkdir(out);
    await runCommand([
      "tar",
      "-xf",
      a.path,
      "-C",
      out,
      "--xattrs",
      "--xattrs-include=security.capability",
      "--same-permissions",
    ], { check: true });
    assert.deepEqual(await Deno.readFile(join(out, "bin/tool")), await Deno.readFile(source));
    assert.deepEqual(await Deno.readFile(join(out, longPath)), new Uint8Array([1, 2, 3]));
    assert.equal(await Deno.readLink(join(out, "usr/local/bin/tool")), "/bin/tool");
    assert.equal((await Deno.stat(join(out, "tmp"))).mode! & 0o7777, 0o1777);
    // GNU tar decodes the PAX xattr record (key and 20-byte value) of exactly that file.
    const xattrs = await runCommand(
      ["tar", "--xattrs", "--xattrs-include=*", "-tvvf", a.path],
      { check: true },
    );
    assert.match(xattrs.stdout, /bin\/capable\n\s+x: 20 security\.capability\n/);
    assert.equal(xattrs.stdout.match(/x: \d+ /g)?.length, 1, "only the file with xattrs has them");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Checks one archive: index → manifest → config → layers, digests and sizes; returns its files. */
async function verifyArchive(image: LocalImage, scratch: string): Promise<{
  config: { User?: string; Entrypoint?: string[] };
  files: Map<string, Listed>;
}> {
  const dir = join(scratch, "x");
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir);
  await runCommand(["tar", "-xf", image.archive, "-C", dir], { check: true });
  assert.deepEqual(JSON.parse(await Deno.readTextFile(join(dir, "oci-layout"))), {
    imageLayoutVersion: "1.0.0",
  });
  const blob = (digest: string) => join(dir, "blobs", "sha256", digest.replace(/^sha256:/, ""));
  const index = JSON.parse(await Deno.readTextFile(join(dir, "index.json")));
  assert.equal(index.manifests.length, 1, image.ref);
  const descriptor = index.manifests[0];
  assert.equal(descriptor.annotations["io.containerd.image.name"], image.ref);
  assert.equal(descriptor.digest, image.manifestDigest);
  assert.equal(
    await digestOf(blob(descriptor.digest)),
    descriptor.digest,
    `${image.ref} manifest`,
  );
  const manifest = JSON.parse(await Deno.readTextFile(blob(descriptor.digest)));
  assert.equal(await digestOf(blob(manifest.config.digest)), manifest.config.digest);
  assert.equal((await Deno.stat(blob(manifest.config.digest))).size, manifest.config.size);
  const config = JSON.parse(await Deno.readTextFile(blob(manifest.config.digest)));
  assert.equal(config.os, "linux");
  assert.equal(config.architecture, "amd64");
  assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
  const files = new Map<string, Listed>();
  for (const [i, layer] of manifest.layers.entries()) {
    assert.equal(await digestOf(blob(layer.digest)), layer.digest, `${image.ref} layer ${i}`);
    assert.equal((await Deno.stat(blob(layer.digest))).size, layer.size);
    if (layer.mediaType.endsWith(".tar")) {
      assert.equal(config.rootfs.diff_ids[i], layer.digest, "uncompressed: diff id = digest");
    }
    for (const entry of await listTar(blob(layer.digest))) files.set(entry.path, entry);
  }
  await Deno.remove(dir, { recursive: true });
  return { config: config.config, files };
}

/** Resolves symlinks in every component of `path`, as the kernel does inside the image. */
function resolveInImage(files: Map<string, Listed>, path: string, what: string): string {
  let parts = path.split("/").filter(Boolean);
  for (let hops = 0, i = 0; i < parts.length; i++) {
    const prefix = "/" + parts.slice(0, i + 1).join("/");
    const entry = files.get(prefix);
    if (entry?.type !== "l") continue;
    assert.ok(++hops < 16, `${what}: symlink loop at ${path}`);
    const target = entry.link!.startsWith("/") ? entry.link! : join(prefix, "..", entry.link!);
    parts = [...target.split("/").filter(Boolean), ...parts.slice(i + 1)];
    i = -1;
  }
  return "/" + parts.join("/");
}

/** Follows symlinks inside the image and requires an executable regular file. */
function assertExecutable(files: Map<string, Listed>, path: string, what: string): void {
  const resolved = resolveInImage(files, path, what);
  const entry = files.get(resolved);
  assert.ok(entry, `${what}: ${path} (${resolved}) is not in the image`);
  assert.equal(entry.type, "-", `${what}: ${resolved} is not a regular file`);
  assert.ok(entry.executable, `${what}: ${resolved} is not executable`);
}

Deno.test({
  name: "images: every image the manifests run is a valid OCI archive with its entrypoint",
  ...needsImageTools(),
  fn: async () => {
    const images = await buildLocalImages();
    const refs = images.map((i) => i.ref);
    const wanted = await manifestImageRefs();
    for (const ref of [...wanted, PAUSE_IMAGE, COREDNS_IMAGE]) {
      assert.ok(refs.includes(ref), `no local image for ${ref}`);
    }

    // The paths the manifests start by `command:` must exist in their image.
    const rendered = await runCommand([toolPath("kubectl"), "kustomize", MANIFESTS], {
      check: true,
    });
    const commands = new Map<string, string[]>();
    for (const doc of loadAllYaml(rendered.stdout) as Record<string, unknown>[]) {
      const spec = (doc as { spec?: { template?: { spec?: Record<string, unknown> } } }).spec
        ?.template?.spec;
      const containers = [
        ...((spec?.containers ?? []) as { image: string; command?: string[] }[]),
        ...((spec?.initContainers ?? []) as { image: string; command?: string[] }[]),
      ];
      for (const c of containers) {
        if (c.command) commands.set(c.image, [...(commands.get(c.image) ?? []), c.command[0]]);
      }
    }
    assert.ok(commands.size > 0, "the manifests set command: somewhere (workloads)");

    const scratch = await Deno.makeTempDir({ prefix: "images-test-" });
    try {
      for (const image of images) {
        const { config, files } = await verifyArchive(image, scratch);
        assert.ok(config.Entrypoint?.length, `${image.ref} has an entrypoint`);
        assertExecutable(files, config.Entrypoint![0], `${image.ref} entrypoint`);
        for (const command of commands.get(image.ref) ?? []) {
          assertExecutable(files, command, `${image.ref} command`);
        }
        // Dynamically linked programs carry their loader.
        if (files.has("/usr/local/bin/deno") || image.ref.includes("spire-server")) {
          assertExecutable(files, "/lib64/ld-linux-x86-64.so.2", `${image.ref} loader`);
        }
      }
    } finally {
      await Deno.remove(scratch, { recursive: true });
    }

    // Unchanged inputs: same digests, archives reused; unused layers are pruned once old.
    const layersDir = join(imagesCacheDir(), "layers");
    const stale = join(layersDir, "0".repeat(64) + ".tar");
    const fresh = join(layersDir, "1".repeat(64) + ".tar");
    await Deno.writeTextFile(stale, "unused");
    await Deno.writeTextFile(fresh, "unused, but maybe a concurrent build's");
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await Deno.utime(stale, twoHoursAgo, twoHoursAgo);
    try {
      const again = await buildLocalImages();
      assert.deepEqual(again.map((i) => i.manifestDigest), images.map((i) => i.manifestDigest));
      await assert.rejects(Deno.stat(stale), Deno.errors.NotFound);
      assert.ok((await Deno.stat(fresh)).isFile);
      for (const image of again) assert.ok((await Deno.stat(image.archive)).isFile);
    } finally {
      await Deno.remove(stale).catch(() => {});
      await Deno.remove(fresh);
    }
  },
});

const containerdReady = ["containerd", "ctr", "runc"].every(hasCommand) && Deno.uid() === 0;

Deno.test({
  name: "images: import into a real containerd, listed under the manifests' refs, and they run",
  // containerd, ctr and runc come from Debian (.ci/run installs them); outside CI, skip without.
  ignore: needsImageTools().ignore || (!isCi() && !containerdReady),
  fn: async () => {
    const images = await buildLocalImages();
    const dir = await Deno.makeTempDir({ prefix: "images-containerd-" });
    const address = join(dir, "containerd.sock");
    await Deno.writeTextFile(
      join(dir, "config.toml"),
      [
        "version = 2",
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        // Only the content store, snapshotter and runtime are needed; CRI would start a server.
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]",
        `  address = "${address}"`,
        "[ttrpc]",
        `  address = "${address}.ttrpc"`,
      ].join("\n") + "\n",
    );
    const containerd = startProcess({
      name: "containerd",
      program: "containerd",
      args: ["--config", join(dir, "config.toml")],
      logPath: join(dir, "containerd.log"),
    });
    const ctr = ["ctr", "--address", address, "-n", "k8s.io"];
    try {
      await waitFor("containerd socket", async () => {
        containerd.assertRunning();
        return (await runCommand([...ctr, "version"])).code === 0;
      }, { timeoutMs: 30_000 });
      const lines: string[] = [];
      await importImages(images, { containerdAddress: address, log: (s) => lines.push(s) });
      assert.equal(lines.length, images.length, "every image imported once");
      const listed = await listContainerdImages({ containerdAddress: address });
      for (const image of images) {
        assert.equal(listed.get(image.ref), image.manifestDigest, image.ref);
      }

      lines.length = 0;
      await importImages(images, { containerdAddress: address, log: (s) => lines.push(s) });
      assert.deepEqual(lines, [], "a second import finds everything in place");

      // Executing proves the layout, the loader and libraries, and (for bundles) the shebang.
      const runs: [string, string[], RegExp][] = [
        [PAUSE_IMAGE, ["/pause", "--version"], /pause\.go 3\.10/],
        [
          "ghcr.io/spiffe/spire-server:1.13.3",
          ["/opt/spire/bin/spire-server", "--version"],
          /1\.13\.3/,
        ],
        ["ghcr.io/spiffe/spiffe-helper:0.11.0", ["/spiffe-helper", "-version"], /0\.11\.0/],
        [COREDNS_IMAGE, ["/coredns", "-version"], /CoreDNS-1\.15\.0/],
        ["ghcr.io/spire-cacerts/csi-driver:0.1.0", [
          "/usr/local/bin/spire-cacerts-csi",
          "--self-test",
        ], /self-test ok/],
        ["ghcr.io/spire-cacerts/workloads:0.1.0", [
          "/usr/local/bin/spire-cacerts-client",
          "--version",
        ], /spire-cacerts-client/],
      ];
      for (const [i, [ref, args, expected]] of runs.entries()) {
        const run = await runCommand([...ctr, "run", "--rm", ref, `images-test-${i}`, ...args]);
        assert.equal(run.code, 0, `${ref} ${args.join(" ")}: ${run.stderr}${run.stdout}`);
        assert.match(run.stdout + run.stderr, expected, ref);
      }
    } finally {
      await containerd.stop();
      // A failed `ctr run` can leave a task's rootfs mounted below the temporary root.
      const mounts = (await Deno.readTextFile("/proc/self/mounts")).split("\n")
        .map((l) => l.split(" ")[1]).filter((m) => m?.startsWith(dir)).reverse();
      for (const mount of mounts) await runCommand(["umount", "-l", mount]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** pluginregistration.v1 (kubelet's plugin watcher API), enough to play kubelet's side. */
const REGISTRATION = protobuf.Root.fromJSON({
  nested: {
    pluginregistration: {
      nested: {
        PluginInfo: {
          fields: {
            type: { type: "string", id: 1 },
            name: { type: "string", id: 2 },
            endpoint: { type: "string", id: 3 },
            supportedVersions: { rule: "repeated", type: "string", id: 4 },
          },
        },
        RegistrationStatus: {
          fields: { pluginRegistered: { type: "bool", id: 1 }, error: { type: "string", id: 2 } },
        },
      },
    },
  },
});

function callRegistration(
  socket: string,
  method: "GetInfo" | "NotifyRegistrationStatus",
  request: Uint8Array,
): Promise<Buffer> {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(
      `/pluginregistration.Registration/${method}`,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      request,
      { deadline: Date.now() + 5_000 },
      (error, value) => (error ? reject(error) : resolve(value!)),
    );
  }).finally(() => client.close());
}

Deno.test({
  name:
    "stand-ins: registrar serves kubelet's registration API and livenessprobe probes the driver",
  ...needsImageTools(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "sidecars-" });
    const registrationDir = join(dir, "registry");
    await Deno.mkdir(registrationDir);
    await writeUnusedKubeconfig(join(dir, "kubeconfig"));
    const driver = await startDriverProcess({ dir, kubeconfigPath: join(dir, "kubeconfig") });
    const [registrarPort, probePort] = freePorts(2);
    const registrar = startProcess({
      name: "csi-node-driver-registrar",
      program: join(toolsBinDir(), "csi-node-driver-registrar"),
      args: [
        `--csi-address=${driver.socketPath}`,
        "--kubelet-registration-path=/var/lib/kubelet/plugins/x/csi.sock",
        `--plugin-registration-path=${registrationDir}`,
        `--http-endpoint=127.0.0.1:${registrarPort}`,
        "--v=5",
      ],
      logPath: join(dir, "registrar.log"),
    });
    const probe = startProcess({
      name: "livenessprobe",
      program: join(toolsBinDir(), "livenessprobe"),
      args: [`--csi-address=${driver.socketPath}`, `--http-endpoint=127.0.0.1:${probePort}`],
      logPath: join(dir, "probe.log"),
    });
    try {
      const status = async (port: number) => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
        await res?.body?.cancel();
        return res?.status ?? 0;
      };
      await waitFor("registrar /healthz", async () => {
        registrar.assertRunning();
        return (await status(registrarPort)) === 200;
      }, { timeoutMs: 30_000 });
      const sockets = [...Deno.readDirSync(registrationDir)].map((e) => e.name);
      assert.deepEqual(sockets, [`${DRIVER_NAME}-reg.sock`]);
      const socket = join(registrationDir, sockets[0]);

      const info = REGISTRATION.lookupType("pluginregistration.PluginInfo")
        .decode(await callRegistration(socket, "GetInfo", new Uint8Array())) as unknown as {
          type: string;
          name: string;
          endpoint: string;
          supportedVersions: string[];
        };
      assert.equal(info.type, "CSIPlugin");
      assert.equal(info.name, DRIVER_NAME);
      assert.equal(info.endpoint, "/var/lib/kubelet/plugins/x/csi.sock");
      assert.deepEqual(info.supportedVersions, ["1.0.0"]);
      const RegistrationStatus = REGISTRATION.lookupType("pluginregistration.RegistrationStatus");
      await callRegistration(
        socket,
        "NotifyRegistrationStatus",
        RegistrationStatus.encode({ pluginRegistered: true }).finish(),
      );
      registrar.assertRunning();

      await waitFor("livenessprobe /healthz 200", async () => {
        probe.assertRunning();
        return (await status(probePort)) === 200;
      }, { timeoutMs: 30_000 });
      await driver.process.stop();
      await waitFor("livenessprobe /healthz 500 without the driver", async () => {
        return (await status(probePort)) === 500;
      }, { timeoutMs: 30_000 });

      // As upstream, a failed registration makes the registrar exit so that it restarts.
      await callRegistration(
        socket,
        "NotifyRegistrationStatus",
        RegistrationStatus.encode({ pluginRegistered: false, error: "test" }).finish(),
      ).catch(() => {});
      await waitFor("registrar exits after a failed registration", () => {
        try {
          registrar.assertRunning();
          return false;
        } catch {
          return true;
        }
      }, { timeoutMs: 10_000 });
    } finally {
      await probe.stop();
      await registrar.stop();
      await driver.process.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
