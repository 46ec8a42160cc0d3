/**
 * Who is in the cluster: each node agent registers itself (id, advertised link address, languages, free
 * memory) with a TTL it renews by heartbeat, and gateways read the live ones. Kept behind a small
 * interface so another registry (Swarm's, Kubernetes') can replace the Redis one.
 */
import type { RedisStore } from '../store/redis-store.js';

export interface AgentInfo {
  id: string;
  /** host:port of the agent's link (POLYKERNEL_AGENT_ADVERTISE). */
  address: string;
  languages: string[];
  freeMemoryBytes: number;
  kernels: number;
}

export interface Membership {
  /** Registers (or renews) an agent for `ttlMs`. */
  register(agent: AgentInfo, ttlMs: number): Promise<void>;
  /** The agent leaves at once (a clean shutdown) instead of at its TTL. */
  leave(agentId: string): Promise<void>;
  /** The agents registered and not expired. */
  live(): Promise<AgentInfo[]>;
}

const GROUP = 'agents';

export class RedisMembership implements Membership {
  constructor(private readonly store: Pick<RedisStore, 'putExpiring' | 'deleteExpiring' | 'listExpiring'>) {}

  register(agent: AgentInfo, ttlMs: number): Promise<void> {
    return this.store.putExpiring(GROUP, agent.id, agent, ttlMs);
  }

  leave(agentId: string): Promise<void> {
    return this.store.deleteExpiring(GROUP, agentId);
  }

  async live(): Promise<AgentInfo[]> {
    return (await this.store.listExpiring<AgentInfo>(GROUP)).map((entry) => entry.value);
  }
}

/** Where a new kernel goes: a live agent that offers its language, with the most free memory. */
export function pickAgent(agents: readonly AgentInfo[], lang: string, memoryBytes: number): AgentInfo | undefined {
  let best: AgentInfo | undefined;
  for (const agent of agents) {
    if (!agent.languages.includes(lang) || agent.freeMemoryBytes < memoryBytes) continue;
    if (!best || agent.freeMemoryBytes > best.freeMemoryBytes) best = agent;
  }
  return best;
}
