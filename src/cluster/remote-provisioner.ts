/**
 * The provisioner of a gateway (POLYKERNEL_ROLE=gateway): the KernelProvisioner interface over links to
 * the node agents that membership lists. A kernel's ref names its node; a launch picks a live agent with
 * room (pickAgent). The language images are read from the agents too (as a KernelImageSource), so the
 * gateway's kernelspecs are what its nodes offer.
 */
import { containerConnectionInfo } from '../protocol/connection-file.js';
import { DomainError, unavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import type { KernelImage } from '../runtime/runtime.js';
import { SignedTransport } from '../transport/kernel-connection.js';
import type { KernelTransport } from '../transport/kernel-transport.js';
import type { KernelImageSource } from '../kernels/kernel-specs.js';
import type {
  CommandOutputListener,
  DeathReason,
  FoundKernel,
  KernelCommand,
  KernelDeathListener,
  KernelProvisioner,
  KernelRef,
  LaunchRequest,
  ResourceUsage,
} from '../kernels/provisioner.js';
import { AgentLink } from './agent-link.js';
import type { ClusterKey } from './cluster-key.js';
import { pickAgent, type AgentInfo, type Membership } from './membership.js';

export interface RemoteProvisionerOptions {
  key: ClusterKey;
  callTimeoutMs: number;
  peerTimeoutMs: number;
  /** How often the live agents are read again. */
  membershipIntervalMs?: number;
}

export class RemoteProvisioner implements KernelProvisioner, KernelImageSource {
  private readonly links = new Map<string, AgentLink>();
  private agents: AgentInfo[] = [];
  private timer?: NodeJS.Timeout;
  private onDeath?: KernelDeathListener;
  private stopped = false;

  constructor(
    private readonly options: RemoteProvisionerOptions,
    private readonly membership: Membership,
    private readonly log: Logger,
  ) {}

  async start(onDeath: KernelDeathListener): Promise<void> {
    this.onDeath = onDeath;
    await this.refresh().catch((error: Error) => this.log.warn('Could not read the node agents yet', { error: error.message }));
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), this.options.membershipIntervalMs ?? 2000);
    this.timer.unref();
  }

  /** Reads the live agents and links to each new one (links to agents that left stay: their kernels may live). */
  async refresh(): Promise<AgentInfo[]> {
    const agents = await this.membership.live();
    this.agents = agents;
    for (const agent of agents) {
      const link = this.links.get(agent.id);
      if (link && link.options.address === agent.address) continue;
      link?.close();
      this.log.info('Linking to node agent', { node: agent.id, address: agent.address });
      const fresh = new AgentLink({ node: agent.id, address: agent.address, key: this.options.key, callTimeoutMs: this.options.callTimeoutMs, peerTimeoutMs: this.options.peerTimeoutMs }, this.log);
      fresh.onDeath = (event) => {
        if (!this.stopped) this.onDeath?.(event.kernelId, event.containerId, event.reason as DeathReason);
      };
      this.links.set(agent.id, fresh);
    }
    return agents;
  }

  private link(node: string | undefined): AgentLink {
    // A ref without a node is from before the cluster: with one agent it can only be there.
    const link = node ? this.links.get(node) : this.links.size === 1 ? [...this.links.values()][0] : undefined;
    if (!link) throw unavailable(`the kernel's node agent ${node ?? '(unknown)'} is not linked; try again shortly`);
    return link;
  }

  async launch(request: LaunchRequest): Promise<Pick<KernelRef, 'containerId' | 'connDir' | 'node'>> {
    if (request.workDir !== undefined) {
      throw unavailable('notebook executions mount a host work directory; not available on a gateway yet');
    }
    let agent = pickAgent(this.agents, request.lang, request.memoryBytes);
    if (!agent) agent = pickAgent(await this.refresh(), request.lang, request.memoryBytes);
    if (!agent) throw unavailable(`no live node agent offers ${request.lang} with ${request.memoryBytes / 1024} KB free; try again shortly`);
    return this.link(agent.id).call('launch', [request]);
  }

  connect(ref: KernelRef, onBadFrame: (error: Error) => void): KernelTransport {
    const info = containerConnectionInfo(ref.key, ref.lang);
    return new SignedTransport(this.link(ref.node).connect(ref, onBadFrame), ref.key, info.signature_scheme, onBadFrame);
  }

  seal(ref: KernelRef): Promise<void> {
    return this.link(ref.node).call('seal', [ref]);
  }

  restart(ref: KernelRef): Promise<void> {
    return this.link(ref.node).call('restart', [ref]);
  }

  interrupt(ref: KernelRef): Promise<void> {
    return this.link(ref.node).call('interrupt', [ref]);
  }

  updateLimits(ref: KernelRef, limits: { memoryBytes: number }): Promise<void> {
    return this.link(ref.node).call('updateLimits', [ref, limits]);
  }

  exec(ref: KernelRef, command: KernelCommand, onOutput: CommandOutputListener): Promise<{ exitCode: number }> {
    return this.link(ref.node).exec(ref, command, onOutput);
  }

  async usage(ref: KernelRef): Promise<ResourceUsage | undefined> {
    return (await this.link(ref.node).call<ResourceUsage | null>('usage', [ref])) ?? undefined;
  }

  async oomKills(ref: KernelRef): Promise<number | undefined> {
    return (await this.link(ref.node).call<number | null>('oomKills', [ref])) ?? undefined;
  }

  oomKillsSeen(ref: KernelRef): number | undefined {
    return this.links.get(ref.node ?? '')?.oomKillsSeen(ref.id);
  }

  async inspect(ref: Pick<KernelRef, 'containerId' | 'node'>): Promise<{ running: boolean; deathReason?: DeathReason } | undefined> {
    return (await this.link(ref.node).call<{ running: boolean; deathReason?: DeathReason } | null>('inspect', [{ containerId: ref.containerId }])) ?? undefined;
  }

  async remove(ref: Pick<KernelRef, 'id' | 'containerId' | 'connDir' | 'node'>): Promise<void> {
    // A kernel that never got a node (its launch failed before placing it) has nothing to remove.
    if (!ref.node && !ref.containerId) return;
    await this.link(ref.node).call('remove', [{ id: ref.id, containerId: ref.containerId, node: ref.node }]);
  }

  async settled(): Promise<void> {
    await Promise.allSettled([...this.links.values()].filter((l) => l.alive).map((l) => l.call('settled', [])));
  }

  /**
   * Every live agent's kernels, for adoption. With no agent live yet this throws (adoption retries),
   * rather than answer "none", which would destroy every record.
   */
  async list(): Promise<FoundKernel[]> {
    const agents = await this.refresh();
    if (agents.length === 0) throw unavailable('no node agent is live yet');
    const lists = await Promise.all(agents.map((agent) => this.link(agent.id).call<FoundKernel[]>('list', [])));
    return lists.flat();
  }

  /**
   * Nothing: a gateway cannot tell another gateway's starting kernel from a leftover, and reaping one
   * node's leftovers needs that node's view (the agent keeps what it launched until told to remove it).
   */
  async reap(): Promise<void> {}

  async ping(): Promise<boolean> {
    const live = [...this.links.values()].filter((link) => link.alive);
    if (live.length === 0) return false;
    const answers = await Promise.all(live.map((link) => link.call<boolean>('ping', [], 5000).catch(() => false)));
    return answers.some(Boolean);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  async removeState(): Promise<void> {}

  /** Closes every link: after the kernel layer has stopped. */
  close(): void {
    this.stop();
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  // KernelImageSource: the images every live agent offers (one entry per image name).
  async listKernelImages(): Promise<KernelImage[]> {
    const agents = this.agents.length > 0 ? this.agents : await this.refresh();
    const byImage = new Map<string, KernelImage>();
    const lists = await Promise.allSettled(agents.map((agent) => this.link(agent.id).call<KernelImage[]>('kernelImages', [])));
    for (const list of lists) if (list.status === 'fulfilled') for (const image of list.value) byImage.set(image.image, image);
    if (byImage.size === 0 && lists.some((l) => l.status === 'rejected')) throw unavailable('no node agent answered for its kernel images');
    return [...byImage.values()];
  }

  async readImageFile(image: string, filePath: string): Promise<Buffer | undefined> {
    for (const agent of this.agents) {
      try {
        const content = await this.link(agent.id).call<string | null>('readImageFile', [image, filePath]);
        if (content !== null && content !== undefined) return Buffer.from(content, 'base64');
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
      }
    }
    return undefined;
  }
}
