/** A keys file for tenant tests: write it, rewrite it (add, revoke) while the service runs. */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface KeyEntry {
  id: string;
  key: string;
  maxKernels?: number;
  maxMemKB?: number;
  maxCpuCreditMs?: number;
  rateLimit?: number;
}

export class KeysFile {
  private constructor(readonly dir: string, readonly file: string) {}

  static async create(entries: KeyEntry[]): Promise<KeysFile> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pk-keys-'));
    const keys = new KeysFile(dir, path.join(dir, 'keys.json'));
    await keys.write(entries);
    return keys;
  }

  /** Replaces the file atomically, as an operator's tooling would (a reader never sees half a file). */
  async write(entries: KeyEntry[]): Promise<void> {
    const temp = `${this.file}.${process.pid}.tmp`;
    await writeFile(temp, JSON.stringify({ keys: entries }));
    await rename(temp, this.file);
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

export const auth = (key: string) => ({ authorization: `token ${key}` });
