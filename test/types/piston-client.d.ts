/** piston-client 1.0.2 ships no types: what its index.js exports, as the tests use it. */
declare module 'piston-client' {
  interface ExecuteConfig {
    language?: string;
    version?: string;
    files?: Array<{ name?: string; content: string; encoding?: string }>;
    stdin?: string;
    args?: string[];
    compileTimeout?: number;
    runTimeout?: number;
    compileMemoryLimit?: number;
    runMemoryLimit?: number;
  }
  interface PistonClient {
    /** The parsed body of GET /api/v2/runtimes, or {success: false, error} when the request failed. */
    runtimes(): Promise<any>;
    execute(language: string, code: string, config?: ExecuteConfig): Promise<any>;
    execute(config: ExecuteConfig): Promise<any>;
  }
  export function piston(options?: { server?: string }): PistonClient;
  export default piston;
}
