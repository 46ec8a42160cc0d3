/**
 * The Execution model of nbexec's /api/executions (field names, status strings and events exactly as its
 * documentation writes them), and the record the store keeps for it. Timestamps are float seconds, as
 * Python's datetime.timestamp() gives them.
 */
import type { CellEvent } from './runner.js';

/** `initializing` (queued, or its kernel starting), `executing`, `completed` or `error: <msg>`. */
export type ExecutionStatus = 'initializing' | 'executing' | 'completed' | `error: ${string}`;

export interface ExecutionModel {
  exec_id: string;
  /** Notebook path relative to the notebook root. */
  path: string;
  /** Notebook parameters, as strings. */
  params: Record<string, string>;
  /** Relative to the root; null until written unless the request named one. */
  output_path: string | null;
  overwrite: boolean;
  jupyter_kernel: string | null;
  cell_timeout: number | null;
  status: ExecutionStatus;
  /** `<current code cell>/<code cells>`; null before the first cell. */
  progress: string | null;
  last_cell_source: string | null;
  started_at: number | null;
  completed_at: number | null;
}

/** What the store keeps: the model plus what this service needs to own and clean up an execution. */
export interface ExecutionRecord extends ExecutionModel {
  /** The service instance running it: only that instance marks it interrupted after a restart. */
  instance: string;
  created_at: number;
  /** The kernel running it, while one does. */
  kernel_id: string | null;
  /** The API key that submitted it; absent for the admin token and the open mode. */
  owner?: string;
}

const MODEL_FIELDS = [
  'exec_id',
  'path',
  'params',
  'output_path',
  'overwrite',
  'jupyter_kernel',
  'cell_timeout',
  'status',
  'progress',
  'last_cell_source',
  'started_at',
  'completed_at',
] as const satisfies readonly (keyof ExecutionModel)[];

export function toModel(record: ExecutionRecord): ExecutionModel {
  return Object.fromEntries(MODEL_FIELDS.map((field) => [field, record[field] ?? null])) as unknown as ExecutionModel;
}

export function isFinished(status: ExecutionStatus): boolean {
  return status === 'completed' || status.startsWith('error:');
}

export const errorStatus = (message: string): ExecutionStatus => `error: ${message}`;

export const INTERRUPTED_BY_RESTART = 'interrupted by restart';

export type ExecutionEvent =
  | { event: 'notebook_start'; timestamp: number; execution: ExecutionModel }
  | { event: 'notebook_complete'; timestamp: number; execution: ExecutionModel }
  | {
      event: 'notebook_error';
      timestamp: number;
      exec_id: string;
      output_path: string | null;
      error: string;
      execution: ExecutionModel;
    }
  | CellEvent;

export function isTerminal(event: ExecutionEvent): boolean {
  return event.event === 'notebook_complete' || event.event === 'notebook_error';
}

/** What a client asks for in POST /api/executions, after the API layer parsed it. */
export interface ExecutionRequest {
  notebook: string;
  outputPath?: string;
  overwrite: boolean;
  jupyterKernel?: string;
  cellTimeoutS?: number;
  params: Record<string, string>;
}
