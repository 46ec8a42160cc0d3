/**
 * Connection files for kernels reached over ZMQ IPC sockets in a per-kernel directory.
 *
 * The kernel (in its container) sees the directory at /conn and binds `ipc:///conn/k-1` … `-5`; the service
 * (on the host) connects to the same sockets through the host path of that directory. Both files carry the
 * same key, so one directory = one kernel, and no TCP port is ever opened.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';

export interface ConnectionInfo {
  transport: 'ipc' | 'tcp';
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: 'hmac-sha256';
  kernel_name: string;
}

export const CONTAINER_CONNECTION_DIR = '/conn';
export const CONNECTION_FILE_NAME = 'conn.json';
const SOCKET_PREFIX = 'k';

export function newKernelKey(): string {
  return randomBytes(32).toString('hex');
}

/** The connection file written for the kernel inside its container. */
export function containerConnectionInfo(key: string, kernelName: string): ConnectionInfo {
  return {
    transport: 'ipc',
    ip: `${CONTAINER_CONNECTION_DIR}/${SOCKET_PREFIX}`,
    shell_port: 1,
    iopub_port: 2,
    stdin_port: 3,
    control_port: 4,
    hb_port: 5,
    key,
    signature_scheme: 'hmac-sha256',
    kernel_name: kernelName,
  };
}

/** The same sockets seen from the host, through the directory bind-mounted at /conn. */
export function hostConnectionInfo(hostDir: string, containerInfo: ConnectionInfo): ConnectionInfo {
  return { ...containerInfo, ip: path.join(hostDir, SOCKET_PREFIX) };
}

export type SocketName = 'shell' | 'iopub' | 'stdin' | 'control' | 'hb';

/** ZMQ endpoint as jupyter_client builds it: `ipc://<ip>-<port>` or `tcp://<ip>:<port>`. */
export function endpoint(info: ConnectionInfo, socket: SocketName): string {
  const port = info[`${socket}_port`];
  return info.transport === 'ipc' ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}
