/**
 * The project's own images, built from `images/*.Containerfile` exactly as a user builds them,
 * with buildah (Debian's daemonless image builder, `buildah bud`), on base images made here under
 * the names the Containerfiles use.
 *
 * No registry is reachable, so each base image a Containerfile names (`ARG …_IMAGE=<default>`)
 * is made locally and loaded into buildah's storage under that name:
 *
 * | base | made of |
 * | --- | --- |
 * | `debian:12-slim` | a Debian bookworm `minbase` root filesystem from `debootstrap` (the Debian archive this machine reaches), cached as one layer |
 * | `denoland/deno:<pinned>` | that Debian layer plus the pinned Deno at `/usr/bin/deno` (from npm, `scripts/deno`), `DENO_DIR=/deno-dir/` as upstream; it also carries this machine's CA bundle with `DENO_TLS_CA_STORE=mozilla,system`, because the npm registry is reached here through an egress proxy whose CA only that bundle holds |
 * | `gcr.io/distroless/cc-debian12:nonroot` | distroless' users, `/tmp` and CA bundle, plus the files of this Debian 12 machine's `libc6`, `libssl3`, `libgcc-s1`, `libgomp1`, `libstdc++6` packages |
 *
 * The build passes `--build-arg BUILD_FLAGS=--allow-bundle-fallback`: `scripts/build.ts` inside
 * the build stage still tries `deno compile` first and only where no `denort` is reachable (as
 * here) ships the pinned Deno and a bundle at the same `/usr/local/bin/<name>`. That is the one
 * difference from a release image; every other step is the Containerfile's own.
 *
 * ```ts
 * const image = await buildContainerfileImage("ghcr.io/spire-cacerts/webhook:0.1.0", {
 *   containerfile: "images/webhook.Containerfile",
 *   log: console.error,
 * });
 * ```
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { isCi } from "./tools.ts";
import { hasCommand, runCommand } from "./process.ts";
import {
  baseLayer,
  cachedLayer,
  ImageBuildError,
  type LayerPlan,
  PATH_ENV,
  sha256File,
} from "./image_layers.ts";
import {
  imageDocuments,
  type ImageRuntimeConfig,
  type LayerBlob,
  type TarEntry,
  writeImageArchive,
  writeLayer,
} from "./oci_archive.ts";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);

/** Project image repository (reference without tag) to the Containerfile that builds it. */
export const CONTAINERFILES: Readonly<Record<string, string>> = {
  "ghcr.io/spire-cacerts/csi-driver": "images/csi.Containerfile",
  "ghcr.io/spire-cacerts/webhook": "images/webhook.Containerfile",
  "ghcr.io/spire-cacerts/workloads": "images/workloads.Containerfile",
};

/** The build argument the local build sets (see the module doc). */
export const LOCAL_BUILD_ARGS: readonly string[] = ["BUILD_FLAGS=--allow-bundle-fallback"];

/** Programs the image builds need on PATH. */
export const BUILDER_COMMANDS = ["buildah", "debootstrap"] as const;

/**
 * The external images a Containerfile builds on: the `FROM` values with the global `ARG`
 * defaults substituted, without the stages it names itself.
 *
 * @param text the Containerfile
 * @returns base references in order of first use, as written (`debian:12-slim`)
 */
export function containerfileBases(text: string): string[] {
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const bases: string[] = [];
  let seenFrom = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const arg = /^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/i.exec(line);
    if (arg && !seenFrom) args.set(arg[1], arg[2]);
    const from = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (!from) continue;
    seenFrom = true;
    const image = from[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => {
      const value = args.get(a ?? b);
      if (value === undefined) {
        throw new ImageBuildError(`FROM ${from[1]}: no ARG default for ${a ?? b} before it`);
      }
      return value;
    });
    if (!stages.has(image) && !bases.includes(image)) bases.push(image);
    if (from[2]) stages.add(from[2]);
  }
  return bases;
}

/**
 * The fully qualified name buildah resolves a short reference to (`debian:12-slim` →
 * `docker.io/library/debian:12-slim`), as Docker's normalisation does.
 */
export function qualifiedReference(ref: string): string {
  const first = ref.split("/")[0];
  const hasRegistry = ref.includes("/") &&
    (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasRegistry) return ref;
  return ref.includes("/") ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

/** Options of {@link buildContainerfileImage}. */
export interface ContainerfileBuildOptions {
  /** The Containerfile, relative to the repository root. */
  containerfile: string;
  /** Cache directory (layers, base archives, buildah storage, output archives). */
  cacheDir: string;
  /** Progress lines. */
  log?: (s: string) => void;
}

/** An image archive `ctr images import` reads, with the digest it will be listed under. */
export interface ContainerfileImage {
  /** Full reference. */
  ref: string;
  /** Path of the OCI archive. */
  archive: string;
  /** Digest of the image manifest. */
  manifestDigest: string;
  /** Archive size in bytes. */
  size: number;
  /** The cached layer tars the base images were made of (kept by the cache pruning). */
  baseLayers: string[];
}

function buildahArgs(cacheDir: string): string[] {
  return [
    "buildah",
    "--root",
    join(cacheDir, "buildah", "storage"),
    "--runroot",
    "/run/spire-cacerts-buildah",
    "--storage-driver",
    "overlay",
  ];
}

async function buildah(cacheDir: string, args: string[], what: string): Promise<string> {
  const out = await runCommand([...buildahArgs(cacheDir), ...args], { cwd: ROOT });
  if (out.code !== 0) {
    throw new ImageBuildError(
      `${what}: buildah ${args.join(" ")} exited ${out.code}:\n` +
        (out.stderr.trim() || out.stdout.trim()).split("\n").slice(-40).join("\n"),
    );
  }
  return out.stdout;
}

/** Whether the builders are installed; in CI a missing one fails the test instead of skipping. */
export function hasImageBuilders(): boolean {
  return isCi() || BUILDER_COMMANDS.every(hasCommand);
}

// ---------------------------------------------------------------------------------------------
// Base images.

const DEBIAN_SUITE = "bookworm";
const DEBIAN_MIRROR = "http://deb.debian.org/debian";

/** The Debian `minbase` root filesystem as one layer tar, made once with debootstrap. */
async function debianLayer(cacheDir: string, log: (s: string) => void): Promise<LayerBlob> {
  const dir = join(cacheDir, "rootfs");
  const path = join(dir, `debian-${DEBIAN_SUITE}-minbase.tar`);
  const meta = `${path}.json`;
  try {
    const blob = JSON.parse(await Deno.readTextFile(meta)) as LayerBlob;
    if ((await Deno.stat(path)).size === blob.size) return { ...blob, path };
  } catch {
    // Not made yet.
  }
  await Deno.mkdir(dir, { recursive: true });
  const target = join(dir, `debootstrap-${Deno.pid}`);
  log(`images: debootstrap --variant=minbase ${DEBIAN_SUITE} (once; about 2 minutes)`);
  try {
    const out = await runCommand([
      "debootstrap",
      "--variant=minbase",
      DEBIAN_SUITE,
      target,
      DEBIAN_MIRROR,
    ]);
    if (out.code !== 0) {
      throw new ImageBuildError(
        `debootstrap ${DEBIAN_SUITE} from ${DEBIAN_MIRROR} exited ${out.code}:\n` +
          out.stdout.split("\n").slice(-20).join("\n") + out.stderr,
      );
    }
    // apt's downloaded indexes and packages are not part of a slim image.
    for (const sub of ["var/cache/apt/archives", "var/lib/apt/lists"]) {
      for await (const entry of Deno.readDir(join(target, sub))) {
        if (entry.isFile) await Deno.remove(join(target, sub, entry.name));
      }
    }
    const tmp = `${path}.tmp-${Deno.pid}`;
    const tar = await runCommand([
      "tar",
      "--sort=name",
      "--numeric-owner",
      "--xattrs",
      "--mtime=1970-01-01",
      "-C",
      target,
      "-cf",
      tmp,
      ".",
    ]);
    if (tar.code !== 0) throw new ImageBuildError(`tar of ${target}: ${tar.stderr.trim()}`);
    const blob = { digest: `sha256:${await sha256File(tmp)}`, size: (await Deno.stat(tmp)).size };
    await Deno.rename(tmp, path);
    await Deno.writeTextFile(meta, JSON.stringify(blob));
    return { ...blob, path };
  } finally {
    await Deno.remove(target, { recursive: true }).catch(() => {});
  }
}

/**
 * Files (and symlinks) of installed Debian packages, as `dpkg -L` lists them, at their real
 * location: Debian 12 merges /lib into /usr/lib, so `/lib/x86_64-linux-gnu/libc.so.6` is written
 * as `/usr/lib/…` and the top-level `/lib` and `/lib64` as the links they are.
 */
async function packageFiles(packages: readonly string[]): Promise<TarEntry[]> {
  const entries = new Map<string, TarEntry>();
  for (const name of packages) {
    const out = await runCommand(["dpkg", "-L", name]);
    if (out.code !== 0) {
      throw new ImageBuildError(`dpkg -L ${name}: ${out.stderr.trim()} (install ${name})`);
    }
    for (const path of out.stdout.split("\n").map((l) => l.trim())) {
      if (!path.startsWith("/") || path.startsWith("/usr/share/")) continue;
      const info = await Deno.lstat(path).catch(() => null);
      if (!info || info.isDirectory) continue;
      const parent = dirname(path);
      if (info.isSymlink && (await Deno.stat(path).catch(() => null))?.isDirectory) {
        // A directory link: keep the top-level merged-/usr ones (/lib, /lib64) only.
        if (parent === "/") {
          entries.set(path, {
            path,
            type: "symlink",
            mode: 0o777,
            linkname: await Deno.readLink(path),
          });
        }
        continue;
      }
      const dest = join(await Deno.realPath(parent), basename(path));
      entries.set(
        dest,
        info.isSymlink
          ? { path: dest, type: "symlink", mode: 0o777, linkname: await Deno.readLink(path) }
          : { path: dest, type: "file", mode: (info.mode ?? 0o644) & 0o7777, source: path },
      );
    }
  }
  for (const link of ["/lib", "/lib64"]) {
    const target = await Deno.readLink(link).catch(() => null);
    if (target) entries.set(link, { path: link, type: "symlink", mode: 0o777, linkname: target });
  }
  return [...entries.values()];
}

const DISTROLESS_CC_PACKAGES = ["libc6", "libssl3", "libgcc-s1", "libgomp1", "libstdc++6"];

interface BasePlan {
  layers: (LayerBlob | LayerPlan)[];
  config: ImageRuntimeConfig;
}

/** How each base image the Containerfiles name is made (see the module doc). */
async function basePlan(
  ref: string,
  cacheDir: string,
  log: (s: string) => void,
): Promise<BasePlan> {
  const repository = ref.slice(0, ref.lastIndexOf(":"));
  const tag = ref.slice(ref.lastIndexOf(":") + 1);
  switch (repository) {
    case "debian":
      if (tag !== "12-slim") break;
      return {
        layers: [await debianLayer(cacheDir, log)],
        config: { Env: [PATH_ENV], Cmd: ["bash"] },
      };
    case "denoland/deno": {
      if (tag !== Deno.version.deno) {
        throw new ImageBuildError(
          `${ref}: the Containerfiles build on Deno ${tag} but the pinned Deno here is ` +
            `${Deno.version.deno} (scripts/deno); make them agree`,
        );
      }
      const bundle = "/etc/ssl/certs/ca-certificates.crt";
      return {
        layers: [await debianLayer(cacheDir, log), {
          name: `deno ${Deno.version.deno}, this machine's CA bundle`,
          entries: [
            { path: "/usr/bin/deno", type: "file", mode: 0o755, source: Deno.execPath() },
            { path: bundle, type: "file", mode: 0o644, source: bundle },
          ],
        }],
        config: {
          Env: [PATH_ENV, "DENO_DIR=/deno-dir/", "DENO_TLS_CA_STORE=mozilla,system"],
          Entrypoint: ["/usr/bin/deno"],
          Cmd: ["repl"],
        },
      };
    }
    case "gcr.io/distroless/cc-debian12":
      if (tag !== "nonroot") break;
      return {
        layers: [await baseLayer(), {
          name: `Debian 12 ${DISTROLESS_CC_PACKAGES.join(", ")}`,
          entries: await packageFiles(DISTROLESS_CC_PACKAGES),
        }],
        config: { Env: [PATH_ENV], User: "65532:65532", WorkingDir: "/home/nonroot" },
      };
  }
  throw new ImageBuildError(
    `no local stand-in for base image ${ref}; known: debian:12-slim, ` +
      `denoland/deno:${Deno.version.deno}, gcr.io/distroless/cc-debian12:nonroot`,
  );
}

/** Makes the base image's archive (cached by manifest digest) and loads it into buildah. */
async function ensureBaseImage(
  ref: string,
  cacheDir: string,
  log: (s: string) => void,
): Promise<string[]> {
  const plan = await basePlan(ref, cacheDir, log);
  const layersDir = join(cacheDir, "layers");
  await Deno.mkdir(layersDir, { recursive: true });
  const layers: LayerBlob[] = [];
  for (const layer of plan.layers) {
    layers.push("digest" in layer ? layer : await cachedLayer(layersDir, layer, log));
  }
  const name = qualifiedReference(ref);
  const spec = { ref: name, layers, config: plan.config };
  const { manifestDigest } = imageDocuments(spec);
  // buildah rewrites the manifest when it pulls, so remember which of its image IDs holds ours.
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, "_");
  const stamp = join(cacheDir, "bases", `${safe}.loaded`);
  const present = await buildah(
    cacheDir,
    ["images", "--noheading", "--no-trunc", "--format", "{{.Name}}:{{.Tag}} {{.ID}}"],
    "listing buildah images",
  );
  const loaded = await Deno.readTextFile(stamp).catch(() => "");
  const paths = layers.map((l) => l.path);
  const [stampDigest, stampId] = loaded.trim().split(" ");
  if (
    stampDigest === manifestDigest &&
    present.split("\n").some((l) =>
      l.trim().replace("sha256:", "").split(/\s+/).join(" ") === `${name} ${stampId}`
    )
  ) {
    return paths;
  }
  const archive = join(cacheDir, "bases", `${safe}.tar`);
  await Deno.mkdir(join(cacheDir, "bases"), { recursive: true });
  log(`images: base image ${name} (local stand-in)`);
  await writeImageArchive(spec, archive);
  try {
    const id = (await buildah(cacheDir, ["pull", "-q", `oci-archive:${archive}`], name)).trim()
      .replace("sha256:", "");
    await buildah(cacheDir, ["tag", id, name], name);
    await Deno.writeTextFile(stamp, `${manifestDigest} ${id}\n`);
  } finally {
    await Deno.remove(archive).catch(() => {});
  }
  return paths;
}

// ---------------------------------------------------------------------------------------------
// Project images.

/**
 * Builds one project image from its Containerfile with buildah (layers cached between runs) on
 * the local base images, and writes it as an OCI archive named for `ref`.
 *
 * @param ref the reference the manifests use, e.g. `ghcr.io/spire-cacerts/csi-driver:0.1.0`
 * @param options the Containerfile, the cache directory and a log
 * @throws {ImageBuildError} when a base image has no stand-in or a build step fails (with the
 *   builder's last lines)
 */
export async function buildContainerfileImage(
  ref: string,
  options: ContainerfileBuildOptions,
): Promise<ContainerfileImage> {
  const log = options.log ?? (() => {});
  const { cacheDir, containerfile } = options;
  const text = await Deno.readTextFile(join(ROOT, containerfile));
  const baseLayers: string[] = [];
  for (const base of containerfileBases(text)) {
    baseLayers.push(...await ensureBaseImage(base, cacheDir, log));
  }

  log(`images: buildah bud -f ${containerfile} -t ${ref}`);
  await buildah(cacheDir, [
    "bud",
    "--isolation",
    "chroot",
    "--network",
    "host",
    "--pull-never",
    "--layers",
    ...LOCAL_BUILD_ARGS.flatMap((a) => ["--build-arg", a]),
    "-f",
    containerfile,
    "-t",
    ref,
    ".",
  ], containerfile);

  // buildah's own oci-archive names the image by `ref.name` only; containerd wants
  // `io.containerd.image.name`, so push to a layout and pack the archive with both names.
  const layout = join(cacheDir, "buildah", "layout");
  const digestFile = join(cacheDir, "buildah", `digest-${Deno.pid}`);
  await buildah(cacheDir, [
    "push",
    "--quiet",
    "--disable-compression",
    "--digestfile",
    digestFile,
    ref,
    `oci:${layout}:${ref}`,
  ], `push ${ref}`);
  const manifestDigest = (await Deno.readTextFile(digestFile)).trim();
  await Deno.remove(digestFile);

  const safe = ref.replace(/[^A-Za-z0-9._-]+/g, "_");
  const archive = join(cacheDir, "archives", `${safe}.tar`);
  const meta = join(cacheDir, "archives", `${safe}.json`);
  await Deno.mkdir(join(cacheDir, "archives"), { recursive: true });
  try {
    const cached = JSON.parse(await Deno.readTextFile(meta));
    if (cached.manifestDigest === manifestDigest) {
      const size = (await Deno.stat(archive)).size;
      if (size === cached.size) return { ref, archive, manifestDigest, size, baseLayers };
    }
  } catch {
    // Not packed yet.
  }
  const size = await packLayout(layout, ref, manifestDigest, archive);
  await Deno.writeTextFile(meta, JSON.stringify({ manifestDigest, size }));
  return { ref, archive, manifestDigest, size, baseLayers };
}

/** Packs one manifest of an OCI layout (and the blobs it names) as an importable archive. */
async function packLayout(
  layout: string,
  ref: string,
  manifestDigest: string,
  archive: string,
): Promise<number> {
  const blob = (digest: string) => `blobs/sha256/${digest.slice("sha256:".length)}`;
  const manifestBytes = await Deno.readFile(join(layout, blob(manifestDigest)));
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as {
    mediaType?: string;
    config: { digest: string };
    layers: { digest: string }[];
  };
  const index = {
    schemaVersion: 2,
    manifests: [{
      mediaType: manifest.mediaType ?? "application/vnd.oci.image.manifest.v1+json",
      digest: manifestDigest,
      size: manifestBytes.length,
      annotations: {
        "io.containerd.image.name": ref,
        "org.opencontainers.image.ref.name": ref.slice(ref.lastIndexOf(":") + 1),
      },
    }],
  };
  const digests = [manifestDigest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  const entries: TarEntry[] = [
    {
      path: "oci-layout",
      type: "file",
      mode: 0o644,
      data: new TextEncoder().encode(JSON.stringify({ imageLayoutVersion: "1.0.0" })),
    },
    {
      path: "index.json",
      type: "file",
      mode: 0o644,
      data: new TextEncoder().encode(JSON.stringify(index)),
    },
    ...[...new Set(digests)].map((d): TarEntry => ({
      path: blob(d),
      type: "file",
      mode: 0o644,
      source: join(layout, blob(d)),
    })),
  ];
  const tmp = `${archive}.tmp-${Deno.pid}`;
  const written = await writeLayer(entries, tmp);
  await Deno.rename(tmp, archive);
  return written.size;
}

/**
 * Removes what old builds left in buildah's storage: untagged images older than an hour (newer
 * ones are the layer cache of the current sources) and the pushed layout's blobs.
 *
 * @param cacheDir the cache directory the builds used
 */
export async function pruneBuilderCache(cacheDir: string): Promise<void> {
  const out = await buildah(cacheDir, [
    "images",
    "--noheading",
    "--filter",
    "dangling=true",
    "--format",
    "{{.ID}} {{.CreatedAtRaw}}",
  ], "listing buildah images");
  const hourAgo = Date.now() - 3600_000;
  for (const line of out.split("\n")) {
    const [id, ...created] = line.trim().split(" ");
    const time = Date.parse(created.slice(0, 2).join("T"));
    if (id && Number.isFinite(time) && time < hourAgo) {
      await runCommand([...buildahArgs(cacheDir), "rmi", id]);
    }
  }
  await Deno.remove(join(cacheDir, "buildah", "layout"), { recursive: true }).catch(() => {});
}
