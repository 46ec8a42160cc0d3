/**
 * The JSON models of the Jupyter REST APIs, as jupyter_server and Kernel Gateway write them. Wire
 * names stay snake_case.
 */
import type { KernelRecord } from '../../kernels/kernel-record.js';
import type { KernelSpecEntry } from '../../kernels/kernel-specs.js';
import type { SessionView } from '../../sessions/session-manager.js';

export interface KernelModel {
  id: string;
  name: string;
  last_activity: string;
  execution_state: KernelRecord['state'];
  connections: number;
}

export function kernelModel(record: KernelRecord, connections: number = record.connections): KernelModel {
  return {
    id: record.id,
    name: record.lang,
    // jupyter_server's gateway client parses this with "%Y-%m-%dT%H:%M:%S.%fZ": toISOString fits.
    last_activity: new Date(record.lastActivity).toISOString(),
    execution_state: record.state,
    connections,
  };
}

export function sessionModel(view: SessionView, connections?: number) {
  const { session } = view;
  return {
    id: session.id,
    path: session.path,
    name: session.name,
    type: session.type,
    kernel: kernelModel(view.kernel, connections),
    // jupyter_server still sends the deprecated notebook field for notebook sessions.
    ...(session.type === 'notebook' ? { notebook: { path: session.path, name: session.name } } : {}),
  };
}

/**
 * jupyter_server's kernelspec model: resources map a logo's name without its extension (or kernel.js /
 * kernel.css by full name) to the URL that serves it.
 */
export function kernelSpecModel(entry: KernelSpecEntry) {
  const resources: Record<string, string> = {};
  for (const file of entry.resources) {
    const key = file === 'kernel.js' || file === 'kernel.css' ? file : file.replace(/\.[^.]*$/, '');
    resources[key] = `/kernelspecs/${encodeURIComponent(entry.name)}/${encodeURIComponent(file)}`;
  }
  return {
    name: entry.name,
    // The label is the image author's JSON: fill what jupyter_server always sends.
    spec: { ...entry.spec, env: entry.spec.env ?? {}, metadata: entry.spec.metadata ?? {}, interrupt_mode: entry.spec.interrupt_mode ?? 'signal' },
    resources,
  };
}
