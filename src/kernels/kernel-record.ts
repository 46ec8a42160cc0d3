/**
 * What the store keeps about a kernel, and its state machine. Every state change goes through
 * `transition`, so an impossible change (e.g. dead -> busy) is caught in one place.
 */
import type { ExecutionState } from '../protocol/messages.js';

export type KernelState = ExecutionState;

export interface ResourceLimits {
  /** Memory cap of the container, KB (the v1 API's unit). */
  maxMemKB: number;
  /** Longest a v1 query may run, ms; past it the kernel is destroyed. */
  timeoutMs: number;
  /** Longest a kernel may stay without activity, ms; 0 = forever. */
  idleTimeoutMs: number;
  /** CPU time after which the kernel is destroyed, ms; 0 = no limit. */
  maxCpuCreditMs: number;
}

export interface KernelRecord {
  id: string;
  /** Kernel name (kernelspec name), e.g. python3. */
  lang: string;
  image: string;
  runtime: string;
  containerId: string;
  /** Host directory with the connection file and the IPC sockets. */
  connDir: string;
  /** The node agent the kernel runs on (role gateway); absent when it runs on this host. */
  node?: string;
  key: string;
  createdAt: number;
  lastActivity: number;
  state: KernelState;
  limits: ResourceLimits;
  clientSessionToken?: string;
  /** The API key (tenant) that created the kernel; absent for the admin token and the open mode. */
  owner?: string;
  numQueriesExecuted: number;
  memoryUsedKB: number;
  cpuCreditUsedMs: number;
  /** CPU spent by earlier incarnations of the kernel (before restarts): cpuCreditUsed keeps growing. */
  cpuCreditBaseMs: number;
  connections: number;
  /**
   * Set by the leader (under its lease's fence) when the kernel must go: idle timeout, CPU credit. The
   * replica running the kernel removes it with this reason.
   */
  cullReason?: string;
  /**
   * Restart generation: 0 at the start, one more after each restart (records of earlier versions have
   * none: 0). Replicas holding a connection to the kernel compare it with theirs (cluster-events.ts).
   */
  generation?: number;
}

const ALLOWED: Record<KernelState, readonly KernelState[]> = {
  starting: ['idle', 'busy', 'dead', 'restarting'],
  idle: ['busy', 'idle', 'restarting', 'dead'],
  busy: ['idle', 'busy', 'restarting', 'dead'],
  restarting: ['starting', 'idle', 'busy', 'dead'],
  dead: [],
};

/** The next state, or the current one when the change is not allowed (a late status from a dead kernel). */
export function transition(current: KernelState, next: KernelState): KernelState {
  return current === next || ALLOWED[current].includes(next) ? next : current;
}

/** The record of a kernel about to start: placed (a warm kernel) or not yet (containerId and connDir empty). */
export function newKernelRecord(
  placed: Pick<KernelRecord, 'id' | 'lang' | 'image' | 'runtime' | 'containerId' | 'connDir' | 'key' | 'node'>,
  limits: ResourceLimits,
  request: { clientSessionToken?: string; owner?: string },
  now: number,
): KernelRecord {
  return {
    ...placed,
    createdAt: now,
    lastActivity: now,
    state: 'starting',
    limits,
    clientSessionToken: request.clientSessionToken,
    owner: request.owner,
    numQueriesExecuted: 0,
    memoryUsedKB: 0,
    cpuCreditUsedMs: 0,
    cpuCreditBaseMs: 0,
    connections: 0,
    generation: 0,
  };
}
