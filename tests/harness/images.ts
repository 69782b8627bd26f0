/**
 * The container images of the local cluster, built without a registry.
 *
 * Every image the manifests (`kubectl kustomize manifests`) run, plus the pause (sandbox) image
 * and CoreDNS, is assembled from local parts as an OCI archive that `ctr images import` loads
 * into containerd under exactly the reference the manifests use:
 *
 * | image | content |
 * | --- | --- |
 * | spire-server, spire-agent, spiffe-helper, spire-controller-manager, coredns | the binaries `tests/tools/build.sh` built from their Go modules, at the upstream images' paths |
 * | csi-node-driver-registrar, livenessprobe | Go stand-ins from `tests/tools/cluster/` (the proxy does not serve their modules) |
 * | pause | a tiny Go `pause` from `tests/tools/cluster/pause` |
 * | spire-cacerts.test/roots-once-client (test workload, built on request) | `tests/tools/cluster/roots-once-client` |
 * | csi-driver, webhook, workloads | built from `images/*.Containerfile` with buildah (`containerfile_images.ts`) |
 *
 * Dynamically linked programs (CGO spire-server/agent, Deno) get the loader and the libraries
 * `ldd` lists. Layers and archives are cached under `~/.cache/spire-cacerts/images` by content:
 * an unchanged input gives the same layer digest and reuses the archive.
 *
 * ```ts
 * const images = await buildLocalImages({ log: console.error });
 * await importImages(images, { containerdAddress: "/run/x/containerd.sock" });
 * ```
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { isCi, toolPath, type ToolRequirement, toolsBinDir } from "./tools.ts";
import { runCommand } from "./process.ts";
import {
  imageDocuments,
  type ImageRuntimeConfig,
  type LayerBlob,
  type TarEntry,
  writeImageArchive,
} from "./oci_archive.ts";
import {
  baseLayer,
  cachedLayer,
  ImageBuildError,
  type LayerPlan,
  libsLayer,
  PATH_ENV,
} from "./image_layers.ts";
import {
  buildContainerfileImage,
  CONTAINERFILES,
  hasImageBuilders,
  pruneBuilderCache,
} from "./containerfile_images.ts";

export { ImageBuildError } from "./image_layers.ts";
export { sha256File } from "./image_layers.ts";

/** A locally built OCI image archive. */
export interface LocalImage {
  /** Full reference, e.g. `ghcr.io/spiffe/spire-server:1.13.3`. */
  ref: string;
  /** Path of the OCI archive (`ctr images import` input). */
  archive: string;
  /** Digest of the image manifest, as `ctr images ls` shows it after the import. */
  manifestDigest: string;
  /** Archive size in bytes. */
  size: number;
}

/** The pause image ref containerd must use as `sandbox_image` (built locally). */
export const PAUSE_IMAGE = "registry.k8s.io/pause:3.10";
/** The CoreDNS image ref (built from github.com/coredns/coredns v1.15.0). */
export const COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.15.0";

/**
 * A test workload, not a product image: `tests/tools/cluster/roots-once-client`, a Go HTTPS client
 * that loads the system roots once at start (the cluster test's trust-restart step).
 */
export const ROOTS_ONCE_CLIENT_IMAGE = "spire-cacerts.test/roots-once-client:v1";

/** Binaries from `tests/tools/build.sh` that the images are made of. */
export const IMAGE_TOOLS = [
  "spire-server",
  "spire-agent",
  "spiffe-helper",
  "spire-controller-manager",
  "coredns",
  "pause",
  "csi-node-driver-registrar",
  "livenessprobe",
  "roots-once-client",
  "kubectl",
] as const;

/** One of {@link IMAGE_TOOLS}. */
export type ImageToolName = typeof IMAGE_TOOLS[number];

/** Thrown when `ctr images import` fails or an image is not listed afterwards. */
export class ImageImportError extends Error {
  /** @param message which image and the ctr output */
  constructor(message: string) {
    super(message);
    this.name = "ImageImportError";
  }
}

const ROOT = resolve(new URL("../..", import.meta.url).pathname);

/** Where layers, bundles and archives are cached: `$SPIRE_CACERTS_IMAGES_DIR` or ~/.cache/spire-cacerts/images. */
export function imagesCacheDir(): string {
  return Deno.env.get("SPIRE_CACERTS_IMAGES_DIR") ||
    join(Deno.env.get("HOME") ?? "/root", ".cache", "spire-cacerts", "images");
}

function imageToolPath(name: ImageToolName): string {
  if (name === "kubectl") return toolPath(name);
  const path = join(toolsBinDir(), name);
  try {
    const info = Deno.statSync(path);
    if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return path;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  throw new ImageBuildError(
    `${name} is not built: expected an executable at ${path}. Build it with ` +
      "`SPIRE_CACERTS_TOOLS=cluster bash tests/tools/build.sh` (or `./scripts/deno task tools`).",
  );
}

/**
 * Like `needsTools` for the image binaries (they are not all in the harness's ToolName list):
 * outside CI a missing one ignores the test, in CI (`CI=true`) the test runs and fails.
 */
export function needsImageTools(): ToolRequirement {
  if (isCi()) return { ignore: false };
  if (!hasImageBuilders()) return { ignore: true };
  try {
    for (const name of IMAGE_TOOLS) imageToolPath(name);
    return { ignore: false };
  } catch {
    return { ignore: true };
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs: content hashes, shared libraries, bundles.

// ---------------------------------------------------------------------------------------------
// Image plans.

/** What one image is made of. */
interface ImagePlan {
  layers: LayerPlan[];
  config: ImageRuntimeConfig;
}

/** A single static (or ldd-completed) Go binary at `path`, the upstream image's layout. */
async function goBinaryPlan(
  tool: ImageToolName,
  path: string,
  config: ImageRuntimeConfig,
  extra: TarEntry[] = [],
): Promise<ImagePlan> {
  const binary = imageToolPath(tool);
  return {
    layers: [
      await baseLayer(),
      ...(await libsLayer([binary])),
      {
        name: `${tool} (${path})`,
        entries: [...extra, { path, type: "file", mode: 0o755, source: binary }],
      },
    ],
    config: { Env: [PATH_ENV], WorkingDir: "/", ...config },
  };
}

/** Upstream SPIRE images: /opt/spire/bin/<name>, and the runtime directories owned by its user. */
function spirePlan(component: "server" | "agent", uid: number): Promise<ImagePlan> {
  const dir = (path: string): TarEntry => ({ path, type: "dir", mode: 0o755, uid, gid: uid });
  const publicDir = component === "server" ? "private" : "public";
  return goBinaryPlan(`spire-${component}`, `/opt/spire/bin/spire-${component}`, {
    User: `${uid}:${uid}`,
    Entrypoint: [`/opt/spire/bin/spire-${component}`, "run"],
    WorkingDir: "/opt/spire",
  }, [
    dir("/opt/spire"),
    dir("/opt/spire/bin"),
    dir(`/etc/spire/${component}`),
    dir(`/run/spire/${component}/${publicDir}`),
    dir(`/tmp/spire-${component}/${publicDir}`),
    dir(`/var/lib/spire/${component}`),
  ]);
}

/** struct vfs_cap_data (revision 2) granting CAP_NET_BIND_SERVICE, effective: `setcap cap_net_bind_service=+ep`. */
function netBindServiceCapability(): Uint8Array {
  const data = new DataView(new ArrayBuffer(20));
  data.setUint32(0, 0x02000000 | 0x1, true); // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
  data.setUint32(4, 1 << 10, true); // permitted[0]: CAP_NET_BIND_SERVICE (10)
  return new Uint8Array(data.buffer);
}

type Recipe = () => Promise<ImagePlan>;

/** Image repository (reference without tag) to how it is made. */
const RECIPES: Record<string, Recipe> = {
  "registry.k8s.io/pause": () =>
    Promise.resolve({
      layers: [{
        name: "pause",
        entries: [{ path: "/pause", type: "file", mode: 0o755, source: imageToolPath("pause") }],
      }],
      config: { User: "65535:65535", Entrypoint: ["/pause"], WorkingDir: "/" },
    }),
  "registry.k8s.io/coredns/coredns": async () => {
    const plan = await goBinaryPlan("coredns", "/coredns", {
      User: "65532:65532",
      Entrypoint: ["/coredns"],
      ExposedPorts: { "53/tcp": {}, "53/udp": {} },
    });
    // As upstream (setcap in its Dockerfile): non-root, yet able to bind :53.
    const last = plan.layers[plan.layers.length - 1];
    last.entries = last.entries.map((e) =>
      e.path === "/coredns"
        ? { ...e, xattrs: { "security.capability": netBindServiceCapability() } }
        : e
    );
    return plan;
  },
  "ghcr.io/spiffe/spire-server": () => spirePlan("server", 1000),
  "ghcr.io/spiffe/spire-agent": () => spirePlan("agent", 0),
  "ghcr.io/spiffe/spiffe-helper": () =>
    goBinaryPlan("spiffe-helper", "/spiffe-helper", { Entrypoint: ["/spiffe-helper"], Cmd: [] }),
  "ghcr.io/spiffe/spire-controller-manager": () =>
    goBinaryPlan("spire-controller-manager", "/spire-controller-manager", {
      Entrypoint: ["/spire-controller-manager"],
    }),
  "registry.k8s.io/sig-storage/csi-node-driver-registrar": () =>
    goBinaryPlan("csi-node-driver-registrar", "/csi-node-driver-registrar", {
      Entrypoint: ["/csi-node-driver-registrar"],
    }),
  "spire-cacerts.test/roots-once-client": () =>
    goBinaryPlan("roots-once-client", "/roots-once-client", {
      User: "65532:65532",
      Entrypoint: ["/roots-once-client"],
    }),
  "registry.k8s.io/sig-storage/livenessprobe": () =>
    goBinaryPlan("livenessprobe", "/livenessprobe", { Entrypoint: ["/livenessprobe"] }),
};

/** Go-built images whose tag must equal the module version `tests/tools/build.sh` recorded. */
const VERSIONED_TOOLS: Record<string, string> = {
  "registry.k8s.io/coredns/coredns": "coredns",
  "ghcr.io/spiffe/spire-server": "spire-server",
  "ghcr.io/spiffe/spire-agent": "spire-agent",
  "ghcr.io/spiffe/spiffe-helper": "spiffe-helper",
  "ghcr.io/spiffe/spire-controller-manager": "spire-controller-manager",
};

/** Splits `repo:tag` (a digest reference is not buildable locally). */
function splitRef(ref: string): { repository: string; tag: string } {
  if (ref.includes("@")) {
    throw new ImageBuildError(`${ref}: digest references cannot be built locally`);
  }
  const colon = ref.lastIndexOf(":");
  if (colon <= ref.lastIndexOf("/")) return { repository: ref, tag: "latest" };
  return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

async function builtVersions(): Promise<Map<string, string>> {
  const versions = new Map<string, string>();
  const stamps = join(dirname(toolsBinDir()), "stamps");
  try {
    for await (const entry of Deno.readDir(stamps)) {
      if (!entry.name.endsWith(".versions")) continue;
      for (const line of (await Deno.readTextFile(join(stamps, entry.name))).split("\n")) {
        const [name, version] = line.trim().split(/\s+/);
        if (name && version) versions.set(name, version);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return versions;
}

/**
 * The image references a kustomization renders (`kubectl kustomize <dir>`), deduplicated.
 *
 * @param dir kustomization directory (default: the repository's `manifests`)
 */
export async function manifestImageRefs(dir = join(ROOT, "manifests")): Promise<string[]> {
  const out = await runCommand([toolPath("kubectl"), "kustomize", dir]);
  if (out.code !== 0) throw new ImageBuildError(`kubectl kustomize ${dir}: ${out.stderr.trim()}`);
  const refs = new Set<string>();
  for (const match of out.stdout.matchAll(/^\s*(?:- )?image:\s*["']?([^"'\s]+)["']?\s*$/gm)) {
    refs.add(match[1]);
  }
  return [...refs].sort();
}

/** Options of {@link buildLocalImages}. */
export interface BuildLocalImagesOptions {
  /** Cache directory (default {@link imagesCacheDir}). */
  outDir?: string;
  /** Progress lines. */
  log?: (s: string) => void;
  /** Kustomization whose images to build (default `manifests`). */
  kustomizeDir?: string;
  /** Build exactly these references instead of the kustomization's + pause + CoreDNS. */
  refs?: string[];
}

/**
 * Builds (or reuses from the cache) every image the manifests need, plus {@link PAUSE_IMAGE} and
 * {@link COREDNS_IMAGE}, as OCI archives.
 *
 * @returns one archive per reference, in reference order
 * @throws {ImageBuildError} naming an image no recipe makes, a binary that is not built, a tag
 *   that differs from the built module's version, or a failed build step
 */
export async function buildLocalImages(
  options: BuildLocalImagesOptions = {},
): Promise<LocalImage[]> {
  const log = options.log ?? (() => {});
  const cacheDir = options.outDir ?? imagesCacheDir();
  const layersDir = join(cacheDir, "layers");
  const archivesDir = join(cacheDir, "archives");
  await Deno.mkdir(layersDir, { recursive: true });
  await Deno.mkdir(archivesDir, { recursive: true });

  const refs = options.refs ??
    [...new Set([...(await manifestImageRefs(options.kustomizeDir)), PAUSE_IMAGE, COREDNS_IMAGE])]
      .sort();
  const unknown = refs.filter((ref) => {
    const { repository } = splitRef(ref);
    return !RECIPES[repository] && !CONTAINERFILES[repository];
  });
  if (unknown.length > 0) {
    throw new ImageBuildError(
      `no local recipe for ${unknown.join(", ")}; known repositories: ` +
        [...Object.keys(RECIPES), ...Object.keys(CONTAINERFILES)].join(", "),
    );
  }
  const versions = await builtVersions();
  for (const ref of refs) {
    const { repository, tag } = splitRef(ref);
    const tool = VERSIONED_TOOLS[repository];
    const built = tool ? versions.get(tool) : undefined;
    if (built && built.replace(/^v/, "") !== tag.replace(/^v/, "")) {
      throw new ImageBuildError(
        `${ref}: the manifests pin ${tag} but tests/tools/build.sh built ${tool} ${built}; ` +
          "make images/kustomization.yaml and the Go module in tests/tools agree",
      );
    }
  }

  const images: LocalImage[] = [];
  const used = new Set<string>();
  let builtFromContainerfile = false;
  for (const ref of refs) {
    const containerfile = CONTAINERFILES[splitRef(ref).repository];
    if (containerfile) {
      const { baseLayers, ...image } = await buildContainerfileImage(ref, {
        containerfile,
        cacheDir,
        log,
      });
      images.push(image);
      for (const path of baseLayers) used.add(basename(path, ".tar"));
      builtFromContainerfile = true;
      continue;
    }
    const plan = await RECIPES[splitRef(ref).repository]();
    const layers: LayerBlob[] = [];
    for (const layer of plan.layers) layers.push(await cachedLayer(layersDir, layer, log));
    const spec = { ref, layers, config: plan.config, history: plan.layers.map((l) => l.name) };
    const { manifestDigest } = imageDocuments(spec);
    const safe = ref.replace(/[^A-Za-z0-9._-]+/g, "_");
    const archive = join(archivesDir, `${safe}.tar`);
    const meta = join(archivesDir, `${safe}.json`);
    let size = -1;
    try {
      const cached = JSON.parse(await Deno.readTextFile(meta)) as {
        manifestDigest: string;
        size: number;
      };
      if (
        cached.manifestDigest === manifestDigest && (await Deno.stat(archive)).size === cached.size
      ) {
        size = cached.size;
      }
    } catch {
      // Not cached yet.
    }
    if (size < 0) {
      log(`images: writing ${ref}`);
      const info = await writeImageArchive(spec, archive);
      size = info.size;
      await Deno.writeTextFile(meta, JSON.stringify({ manifestDigest, size }));
    }
    images.push({ ref, archive, manifestDigest, size });
    for (const layer of layers) used.add(basename(layer.path, ".tar"));
  }
  if (builtFromContainerfile) await pruneBuilderCache(cacheDir);
  if (!options.refs) await pruneCache(cacheDir, used, log);
  return images;
}

/** Unused cache entries older than this are removed (younger ones may belong to a concurrent build). */
const PRUNE_AGE_MS = 60 * 60 * 1000;

/**
 * Removes layers (and project builds of earlier versions) that the current full build did not
 * use, so that rebuilt tools and changed sources do not pile up hundreds of megabytes per change.
 */
async function pruneCache(cacheDir: string, used: Set<string>, log: (s: string) => void) {
  const now = Date.now();
  for (const sub of ["layers", "project"]) {
    const dir = join(cacheDir, sub);
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) entries.push(entry);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    for (const entry of entries) {
      const key = entry.name.replace(/\.(tar|json)$/, "").replace(/\.tmp-\d+$/, "");
      if (used.has(key)) continue;
      const path = join(dir, entry.name);
      const info = await Deno.lstat(path).catch(() => null);
      if (!info || now - (info.mtime?.getTime() ?? now) < PRUNE_AGE_MS) continue;
      log(`images: pruning unused ${sub}/${entry.name}`);
      await Deno.remove(path, { recursive: true }).catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Import.

/** Options of {@link importImages}. */
export interface ImportImagesOptions {
  /** containerd's gRPC socket. */
  containerdAddress: string;
  /** containerd namespace (default `k8s.io`, the one the CRI plugin uses). */
  namespace?: string;
  /** The `ctr` binary (default `ctr` on PATH). */
  ctr?: string;
  /** Snapshotter to unpack into (default: containerd's default, overlayfs); must match CRI's. */
  snapshotter?: string;
  /** Progress lines. */
  log?: (s: string) => void;
}

/**
 * The images in a containerd namespace: reference to manifest digest (`ctr images ls`).
 *
 * @param options socket, namespace and ctr binary
 */
export async function listContainerdImages(
  options: Pick<ImportImagesOptions, "containerdAddress" | "namespace" | "ctr">,
): Promise<Map<string, string>> {
  const ctr = options.ctr ?? "ctr";
  const base = [ctr, "--address", options.containerdAddress, "-n", options.namespace ?? "k8s.io"];
  const out = await runCommand([...base, "images", "ls"]);
  if (out.code !== 0) throw new ImageImportError(`ctr images ls: ${out.stderr.trim()}`);
  const images = new Map<string, string>();
  for (const line of out.stdout.split("\n").slice(1)) {
    const [ref, , digest] = line.trim().split(/\s+/);
    if (ref && digest?.startsWith("sha256:")) images.set(ref, digest);
  }
  return images;
}

/**
 * Imports archives with `ctr --address <sock> -n k8s.io images import` (which also unpacks them
 * into the default snapshotter). Idempotent: an image already present with the same manifest
 * digest is skipped. Afterwards every reference must be listed with its digest.
 *
 * @throws {ImageImportError} when ctr fails or an image is missing after the import
 */
export async function importImages(
  images: LocalImage[],
  options: ImportImagesOptions,
): Promise<void> {
  const ctr = options.ctr ?? "ctr";
  const namespace = options.namespace ?? "k8s.io";
  const base = [ctr, "--address", options.containerdAddress, "-n", namespace];
  const present = await listContainerdImages(options);
  for (const image of images) {
    if (present.get(image.ref) === image.manifestDigest) continue;
    options.log?.(`images: importing ${image.ref}`);
    const snapshotter = options.snapshotter ? ["--snapshotter", options.snapshotter] : [];
    const out = await runCommand([...base, "images", "import", ...snapshotter, image.archive]);
    if (out.code !== 0) {
      throw new ImageImportError(
        `ctr images import ${image.archive} (${image.ref}) exited ${out.code}: ${out.stderr.trim()}`,
      );
    }
  }
  const after = await listContainerdImages(options);
  const wrong = images.filter((image) => after.get(image.ref) !== image.manifestDigest);
  if (wrong.length > 0) {
    throw new ImageImportError(
      `after import, containerd (${options.containerdAddress}, namespace ${namespace}) lists ` +
        wrong.map((i) => `${i.ref} as ${after.get(i.ref) ?? "missing"} (want ${i.manifestDigest})`)
          .join("; "),
    );
  }
}
