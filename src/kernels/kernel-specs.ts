/**
 * The kernelspecs on offer, derived from the language images present on the engine: each image carries
 * its kernelspec, aliases and resources as labels (see images/<lang>/Dockerfile), so adding a language is adding
 * a folder under images/ and building it. Nothing is listed by hand.
 */
import type { ContainerRuntime, KernelImage } from '../runtime/runtime.js';
import { LABELS } from '../runtime/runtime.js';

export interface KernelSpec {
  language: string;
  display_name: string;
  argv: string[];
  env: Record<string, string>;
  metadata: Record<string, unknown>;
  interrupt_mode: 'signal' | 'message';
}

export interface KernelSpecEntry {
  name: string;
  spec: KernelSpec;
  image: string;
  aliases: string[];
  /** Resource file names served under /kernelspecs/<name>/ (logos), read from the image. */
  resources: string[];
  /** Batch mode's `"*"` commands, from the image's build/exec labels; undefined when the image has none. */
  build?: string;
  exec?: string;
  /** Every label of the image, for the layers that read more of what an image says (src/judge). */
  labels: Record<string, string>;
}

/** One thing an image has installed for programs to use (its org.polykernel.packages label). */
export interface DeclaredPackage {
  name: string;
  version: string;
  /** Python: the top-level modules the distribution provides, i.e. what `import` takes. */
  import?: string[];
}

/**
 * The image's declared packages, or undefined when it declares none or the label is not a list of
 * {name, version} (an image built by hand, or by an older scripts/build-images.mjs): its kernelspec is
 * still listed, without them.
 */
export function declaredPackages(label: string | undefined): DeclaredPackage[] | undefined {
  if (!label) return undefined;
  try {
    const parsed: unknown = JSON.parse(label);
    if (!Array.isArray(parsed)) return undefined;
    const packages: DeclaredPackage[] = [];
    for (const item of parsed as Record<string, unknown>[]) {
      if (!item || typeof item.name !== 'string' || typeof item.version !== 'string') return undefined;
      const entry: DeclaredPackage = { name: item.name, version: item.version };
      if (Array.isArray(item.import)) entry.import = item.import.filter((m): m is string => typeof m === 'string');
      packages.push(entry);
    }
    return packages;
  } catch {
    return undefined;
  }
}

function parseImage(image: KernelImage): KernelSpecEntry | undefined {
  try {
    const parsed = JSON.parse(image.labels[LABELS.kernelspec] ?? '') as { name?: string; spec?: KernelSpec };
    if (!parsed.name || !parsed.spec) return undefined;
    const split = (label: string | undefined) => (label ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const packages = declaredPackages(image.labels[LABELS.packages]);
    // Under metadata.polykernel, where a Jupyter client passes unknown kernelspec metadata through.
    const spec = packages ? { ...parsed.spec, metadata: { ...parsed.spec.metadata, polykernel: { packages } } } : parsed.spec;
    return {
      name: parsed.name,
      spec,
      image: image.image,
      aliases: split(image.labels[LABELS.aliases]),
      resources: split(image.labels[LABELS.resources]),
      build: image.labels[LABELS.build],
      exec: image.labels[LABELS.exec],
      labels: image.labels,
    };
  } catch {
    return undefined;
  }
}

/** Where a language image keeps the resource files its org.polykernel.resources label names. */
export const KERNELSPEC_RESOURCE_DIR = '/usr/share/polykernel/kernelspec';

/** Where the language images are read: the local engine, or (role gateway) the node agents' engines. */
export type KernelImageSource = Pick<ContainerRuntime, 'listKernelImages' | 'readImageFile'>;

export class KernelSpecRegistry {
  private entries = new Map<string, KernelSpecEntry>();
  /** Resource files read out of images, by image and file name: an image's files never change. */
  private readonly resourceCache = new Map<string, Promise<Buffer | undefined>>();
  private aliases = new Map<string, string>();
  private loadedAt = -Infinity;
  private refreshing?: Promise<void>;

  constructor(
    private readonly runtime: KernelImageSource,
    private readonly imagePrefix: string,
    private readonly clock: () => number = Date.now,
    private readonly maxAgeMs = 10_000,
  ) {}

  /**
   * Stale-while-revalidate: the first call waits for the engine; later calls answer from the cache and
   * re-read the images in the background once it is older than maxAgeMs, so a busy engine (an image
   * build in progress) never slows a create down. `force` waits for a fresh read.
   */
  async refresh(force = false): Promise<void> {
    const age = this.clock() - this.loadedAt;
    if (this.loadedAt === -Infinity) return this.reload();
    // Even a forced refresh waits a second, so a stream of unknown names cannot flood the engine.
    if (force) return age < 1000 ? undefined : this.reload();
    if (age >= this.maxAgeMs) void this.reload().catch(() => undefined);
  }

  private reload(): Promise<void> {
    this.refreshing ??= this.readImages().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async readImages(): Promise<void> {
    const images = await this.runtime.listKernelImages();
    const entries = new Map<string, KernelSpecEntry>();
    for (const image of images) {
      if (!image.image.startsWith(this.imagePrefix)) continue;
      const entry = parseImage(image);
      // Prefer :latest when several tags carry the same kernel.
      if (entry && (!entries.has(entry.name) || image.image.endsWith(':latest'))) entries.set(entry.name, entry);
    }
    const aliases = new Map<string, string>();
    for (const entry of entries.values()) {
      for (const alias of entry.aliases) aliases.set(alias.toLowerCase(), entry.name);
    }
    this.entries = entries;
    this.aliases = aliases;
    this.loadedAt = this.clock();
  }

  async list(): Promise<KernelSpecEntry[]> {
    await this.refresh();
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The entry for a kernel name or one of its aliases (case-insensitive), or undefined. */
  async resolve(nameOrAlias: string): Promise<KernelSpecEntry | undefined> {
    await this.refresh();
    const key = nameOrAlias.toLowerCase();
    const found = this.entries.get(key) ?? this.entries.get(this.aliases.get(key) ?? '');
    if (found) return found;
    // An image built after the last refresh should not need a restart of the service.
    await this.refresh(true);
    return this.entries.get(key) ?? this.entries.get(this.aliases.get(key) ?? '');
  }

  /**
   * A resource file (a logo) of a kernelspec, read from its image: the image is the one source of
   * truth, so a language image built on another host brings its own logo. Only files the image's
   * resources label names can be read. Undefined when the kernelspec or the file is unknown.
   */
  async readResource(nameOrAlias: string, file: string): Promise<Buffer | undefined> {
    const entry = await this.resolve(nameOrAlias);
    if (!entry || !entry.resources.includes(file)) return undefined;
    return this.readImageFile(entry, `${KERNELSPEC_RESOURCE_DIR}/${file}`);
  }

  /**
   * A file of a kernelspec's image (its logo, its version file), read once per build of the image: the
   * cache key holds the image's source hash, so a rebuilt image under the same tag is read again.
   */
  readImageFile(entry: KernelSpecEntry, filePath: string): Promise<Buffer | undefined> {
    const key = `${entry.image}\n${entry.labels[LABELS.sourceHash] ?? ''}\n${filePath}`;
    let pending = this.resourceCache.get(key);
    if (!pending) {
      pending = this.runtime.readImageFile(entry.image, filePath);
      this.resourceCache.set(key, pending);
      pending.catch(() => this.resourceCache.delete(key));
    }
    return pending;
  }

  async names(): Promise<string[]> {
    return (await this.list()).map((entry) => entry.name);
  }
}
