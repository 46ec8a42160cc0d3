/**
 * The service's configuration: one declarative table of options (name, default, parser), read once from
 * an environment object, validated, frozen. A bad value stops the start with a message naming the variable.
 * Names follow Jupyter Kernel Gateway (KG_*) where it has one, so its users can switch.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

type Parser<T> = (raw: string, name: string) => T;

class ConfigError extends Error {}

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => (raw, name) => {
  // Decimal digits only: Number() would read "" as 0 (KG_PORT= silently a random port) and "0x50" as 80.
  const value = /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return value;
};
const num = (min: number): Parser<number> => (raw, name) => {
  const value = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(value) || value < min) throw new ConfigError(`${name} must be a number >= ${min}, got "${raw}"`);
  return value;
};
const bool: Parser<boolean> = (raw, name) => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
};
const str: Parser<string> = (raw) => raw;
/** A name that is also a folder name, a label value and a key prefix: no slashes, no dot-only names. */
const name: Parser<string> = (raw, env) => {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(raw)) {
    throw new ConfigError(`${env} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, got "${raw}"`);
  }
  return raw;
};
const list: Parser<string[]> = (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean);
const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw, name) => {
  if (!(values as string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
  return raw as T;
};
/** `lang=n,lang=n` pairs, e.g. per-language pool sizes or runtimes. */
const pairs = <T>(valueParser: Parser<T>): Parser<Record<string, T>> => (raw, name) => {
  const out: Record<string, T> = {};
  for (const item of list(raw, name)) {
    // Split at the first "=" only, so that "a=2=3" fails the value's parser instead of dropping "=3".
    const at = item.indexOf('=');
    const key = at < 0 ? '' : item.slice(0, at).trim();
    if (!key) throw new ConfigError(`${name} must be a list of name=value pairs, got "${raw}"`);
    out[key] = valueParser(item.slice(at + 1).trim(), name);
  }
  return out;
};

/** Extra container labels; the service's own (org.polykernel.*) cannot be set or overridden this way. */
const containerLabels: Parser<Record<string, string>> = (raw, name) => {
  const labels = pairs(str)(raw, name);
  for (const key of Object.keys(labels)) {
    if (key.startsWith('org.polykernel.')) throw new ConfigError(`${name}: ${key} is one of the service's own labels and cannot be set`);
  }
  return labels;
};

/**
 * host:port, as a link address is given (a TCP endpoint of libzmq); `*` listens on every interface. A host
 * name may hold `_`: Docker's DNS names a Swarm task `<stack>_<service>.<node or slot>.<task id>`, and
 * getaddrinfo resolves it as any other name.
 */
const hostPort: Parser<string> = (raw, name) => {
  if (raw === '') return raw;
  const match = /^(\*|[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$/.exec(raw);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) throw new ConfigError(`${name} must be host:port (e.g. 0.0.0.0:7700), got "${raw}"`);
  return raw;
};

/** `auto`, or true/false (POLYKERNEL_ALLOW_REMOTE_ACCESS: `auto` decides by the listening address). */
const autoBool: Parser<boolean | 'auto'> = (raw, name) => (raw.trim().toLowerCase() === 'auto' ? 'auto' : bool(raw, name));
/**
 * The host memory budget (KB): a number, 0 for none, or `auto` = the host's memory less a reserve for the
 * service, the engine and the system (a tenth of it, at least 2 GiB; at least 256 MB are left to kernels).
 */
const memoryBudget: Parser<number> = (raw, name) => {
  if (raw.trim().toLowerCase() !== 'auto') return int(0)(raw, name);
  const totalKB = Math.floor(os.totalmem() / 1024);
  return Math.max(262144, totalKB - Math.max(2 * 1024 * 1024, Math.floor(totalKB / 10)));
};

/** Every limit of a judged run (src/judge/model.ts RunLimits), as `name=value` pairs. */
export const RUN_LIMIT_NAMES = ['cpuTimeMs', 'extraCpuTimeMs', 'wallTimeMs', 'memoryKB', 'stackKB', 'maxProcesses', 'maxOutputBytes', 'maxFileSizeKB'] as const;
export type RunLimitName = (typeof RUN_LIMIT_NAMES)[number];
const judgeLimits: Parser<Record<RunLimitName, number>> = (raw, name) => {
  const parsed = pairs(int(0))(raw, name);
  const unknown = Object.keys(parsed).filter((key) => !(RUN_LIMIT_NAMES as readonly string[]).includes(key));
  if (unknown.length) throw new ConfigError(`${name}: unknown limit ${unknown.join(', ')}; the limits are ${RUN_LIMIT_NAMES.join(', ')}`);
  const missing = RUN_LIMIT_NAMES.filter((key) => parsed[key] === undefined);
  if (missing.length) throw new ConfigError(`${name} must set every limit; missing ${missing.join(', ')}`);
  return parsed as Record<RunLimitName, number>;
};

/** `auto` (about the number of cores: what judging at once can use) or a whole number from 1. */
const concurrency: Parser<number> = (raw, name) =>
  raw.trim().toLowerCase() === 'auto' ? Math.max(1, os.availableParallelism()) : int(1, 1024)(raw, name);

interface Option<T> {
  env: string;
  parse: Parser<T>;
  doc: string;
}
const opt = <T>(env: string, parse: Parser<T>, doc: string): Option<T> => ({ env, parse, doc });
export const OPTIONS = {
  port: opt('KG_PORT', int(0, 65535), 'TCP port the service listens on'),
  ip: opt('KG_IP', str, 'address the service listens on'),
  authToken: opt('KG_AUTH_TOKEN', str, 'when set, every request needs this token or an API key; this token is the admin key (sees every tenant)'),
  apiKeysFile: opt('POLYKERNEL_API_KEYS_FILE', str, 'JSON file of tenant API keys ({"keys": [{id, key or sha256, maxKernels?, maxMemKB?, maxCpuCreditMs?, rateLimit?}]}); re-read when it changes; empty = no keys'),
  apiKeysReloadMs: opt('POLYKERNEL_API_KEYS_RELOAD_MS', int(0, 3_600_000), 'check the API keys file for a change at most this often (ms); a revoked key is refused from then on'),
  keyMaxKernels: opt('POLYKERNEL_KEY_MAX_KERNELS', int(0), 'kernels an API key may have at once unless its entry says otherwise; 0 = no limit'),
  keyMaxMemKB: opt('POLYKERNEL_KEY_MAX_MEM_KB', int(0), 'sum of the memory caps of an API key\'s kernels (KB) unless its entry says otherwise; 0 = no limit'),
  keyMaxCpuCreditMs: opt('POLYKERNEL_KEY_MAX_CPU_CREDIT_MS', int(0), 'CPU time an API key\'s live kernels may have used together before its creates are refused (ms); 0 = no limit'),
  rateLimit: opt('POLYKERNEL_RATE_LIMIT', int(0), 'requests per rate-limit window per API key unless its entry says otherwise (429 past it); 0 = no limit'),
  rateLimitWindowS: opt('POLYKERNEL_RATE_LIMIT_WINDOW_S', int(1, 86_400), 'size of the fixed rate-limit window (s), 900 as Backend.AI'),
  maxKernels: opt('KG_MAX_KERNELS', int(0), 'most kernels alive at once, across every replica sharing the Redis; 0 = no limit'),
  kernelClaimTtlMs: opt('POLYKERNEL_KERNEL_CLAIM_TTL_MS', int(1000, 3_600_000), 'a kernel slot (KG_MAX_KERNELS) or clientSessionToken claimed by a create whose kernel is not ready within this long is free again (a replica that crashed mid-create frees its claims by itself); must be longer than POLYKERNEL_START_TIMEOUT_MS'),
  leaderLeaseMs: opt('POLYKERNEL_LEADER_LEASE_MS', int(1000, 600_000), 'replicas sharing a Redis: the leader (the one replica that culls idle kernels) holds its lease this long, renewed every third of it; a leader that stops renewing is replaced within this long'),
  defaultKernelName: opt('KG_DEFAULT_KERNEL_NAME', str, 'kernel started when a request names none'),
  listKernels: opt('KG_LIST_KERNELS', bool, 'whether GET /api/kernels lists kernels'),
  envWhitelist: opt('KG_ENV_WHITELIST', list, 'variables besides KERNEL_* passed from a create request to the kernel'),
  allowOrigin: opt('KG_ALLOW_ORIGIN', str, 'Access-Control-Allow-Origin, and the one origin besides the service itself whose web pages may use it (* = any)'),
  allowRemoteAccess: opt('POLYKERNEL_ALLOW_REMOTE_ACCESS', autoBool, 'answer requests whose Host is not a local name (auto = only when not listening on a loopback address; as jupyter_server)'),
  localHostnames: opt('POLYKERNEL_LOCAL_HOSTNAMES', list, 'host names besides loopback addresses accepted in the Host header while remote access is off'),
  allowHeaders: opt('KG_ALLOW_HEADERS', str, 'Access-Control-Allow-Headers'),
  allowMethods: opt('KG_ALLOW_METHODS', str, 'Access-Control-Allow-Methods'),
  allowCredentials: opt('KG_ALLOW_CREDENTIALS', str, 'Access-Control-Allow-Credentials'),
  exposeHeaders: opt('KG_EXPOSE_HEADERS', str, 'Access-Control-Expose-Headers'),
  maxAge: opt('KG_MAX_AGE', str, 'Access-Control-Max-Age'),
  playground: opt('POLYKERNEL_PLAYGROUND', bool, 'serve the playground page (a code editor running on the channels WebSocket) at /; false = / is 404 as any unknown path'),
  instance: opt('POLYKERNEL_INSTANCE', name, 'name of this service instance; it adopts and reaps only containers labelled with it'),
  redisUrl: opt('REDIS_URL', str, 'Redis for shared state; empty = in-process store'),
  redisPrefix: opt('POLYKERNEL_REDIS_PREFIX', str, 'prefix of every Redis key'),
  role: opt('POLYKERNEL_ROLE', oneOf('all', 'gateway', 'agent'), 'all = one process serves the APIs and runs kernels on its Docker engine; gateway = serves the APIs, kernels run on node agents (needs REDIS_URL and the cluster key); agent = runs kernels on this host for gateways, serves no API'),
  clusterKeyFile: opt('POLYKERNEL_CLUSTER_KEY_FILE', str, 'roles gateway and agent: file with the cluster key (32 random bytes, base64 or Z85; `npm run --silent cluster-key`); the gateway–agent link is CurveZMQ with the keypair derived from it, and an agent admits only peers holding it'),
  agentListen: opt('POLYKERNEL_AGENT_LISTEN', hostPort, 'role agent: host:port its link listens on (TCP, CurveZMQ)'),
  agentAdvertise: opt('POLYKERNEL_AGENT_ADVERTISE', hostPort, 'role agent: host:port gateways reach its link at; empty = POLYKERNEL_AGENT_LISTEN'),
  agentId: opt('POLYKERNEL_AGENT_ID', str, 'role agent: its node id in the cluster (kernel records name it); empty = the host name'),
  agentMaxConnectionsPerPeer: opt('POLYKERNEL_AGENT_MAX_CONNECTIONS_PER_PEER', int(1, 100_000), 'role agent: kernel connections one gateway may hold open through it; past it a connection is refused'),
  linkCallTimeoutMs: opt('POLYKERNEL_LINK_CALL_TIMEOUT_MS', int(100, 600_000), 'role gateway: a call to a node agent (launch, restart, …) not answered within this long fails with 503'),
  linkPeerTimeoutMs: opt('POLYKERNEL_LINK_PEER_TIMEOUT_MS', int(2000, 600_000), 'gateway and agent: a link peer silent this long (heartbeats every second) is taken for gone: an agent closes that gateway\'s kernel connections and commands, a gateway fails what waits on that agent'),
  agentTtlMs: opt('POLYKERNEL_AGENT_TTL_MS', int(2000, 600_000), 'role agent: its registration in Redis lives this long unless renewed (it renews every third of it); gateways place kernels only on registered agents'),
  stateDir: opt('POLYKERNEL_STATE_DIR', str, 'host directory holding one socket directory per kernel'),
  containerLabels: opt('POLYKERNEL_CONTAINER_LABELS', containerLabels, 'extra labels on every container the service starts, key=value,…; e.g. com.docker.compose.project=<name> makes `docker compose down --remove-orphans` remove the kernels too'),
  dockerHost: opt('POLYKERNEL_DOCKER_HOST', str, 'Docker engine: unix:///path or tcp://host:port; empty = DOCKER_HOST, else /var/run/docker.sock'),
  imagePrefix: opt('POLYKERNEL_IMAGE_PREFIX', str, 'kernel images are <prefix><lang>:latest'),
  containerRuntime: opt('KG_CONTAINER_RUNTIME', str, 'OCI runtime for kernels (runc, runsc)'),
  containerRuntimeByLang: opt('POLYKERNEL_RUNTIME_BY_LANG', pairs(str), 'per-language runtime, e.g. python3=runsc'),
  defaultMaxMemKB: opt('POLYKERNEL_DEFAULT_MAX_MEM_KB', int(16384), 'memory cap of a kernel when the request sets none (KB)'),
  maxMemKBCap: opt('POLYKERNEL_MAX_MEM_KB', int(16384), 'largest maxMem a request may ask for (KB); more is 406'),
  defaultTimeoutMs: opt('POLYKERNEL_DEFAULT_TIMEOUT_MS', int(1), 'query timeout when the request sets none (ms)'),
  timeoutCapMs: opt('POLYKERNEL_MAX_TIMEOUT_MS', int(1), 'largest timeout a request may ask for (ms); more is 406'),
  idleTimeoutMs: opt('POLYKERNEL_IDLE_TIMEOUT_MS', int(0), 'a kernel idle this long is destroyed; 0 = never'),
  maxCpuCreditMs: opt('POLYKERNEL_MAX_CPU_CREDIT_MS', int(0), 'CPU time after which a kernel is destroyed; 0 = no limit'),
  idleCpuMs: opt('POLYKERNEL_IDLE_CPU_MS', int(0), 'CPU time a kernel may use per POLYKERNEL_IDLE_CPU_WINDOW_MS while no request of a client is in progress (processes left running after a query); more destroys it; 0 = no limit'),
  idleCpuWindowMs: opt('POLYKERNEL_IDLE_CPU_WINDOW_MS', int(1000), 'the sliding window of POLYKERNEL_IDLE_CPU_MS (ms)'),
  memoryBudgetKB: opt('POLYKERNEL_MEMORY_BUDGET_KB', memoryBudget, 'most memory the caps of all kernels (live, starting, warm) may add up to (KB); a create past it is 503; auto = host memory less a tenth (at least 2 GiB); 0 = no budget'),
  restartDeadKernels: opt('POLYKERNEL_RESTART_DEAD_KERNELS', bool, 'a kernel whose container dies (out of memory, killed) is restarted in place, as Jupyter servers do, instead of removed'),
  maxAttachedKernels: opt('POLYKERNEL_MAX_ATTACHED_KERNELS', int(1, 1_000_000), 'replicas sharing one Redis: most kernels of other replicas this one holds a connection to at once (attached on a first request); past it the one unused longest is let go, or the request is 503 when all are in use'),
  attachIdleMs: opt('POLYKERNEL_ATTACH_IDLE_MS', int(1000), 'replicas sharing one Redis: a kernel of another replica unused here this long is let go (its connection closed; the next request attaches again)'),
  clusterSyncMs: opt('POLYKERNEL_CLUSTER_SYNC_MS', int(100, 3_600_000), 'replicas sharing one Redis: how often the kernels this replica holds are re-checked against their records (catching a delete or restart event it missed) and idle attached ones let go (ms)'),
  cpus: opt('POLYKERNEL_CPUS', num(0.01), 'CPU quota per kernel, in CPUs'),
  pidsLimit: opt('POLYKERNEL_PIDS_LIMIT', int(8), 'most processes per kernel container'),
  workDirSizeMB: opt('POLYKERNEL_WORKDIR_MB', int(1), 'size of the writable work directory (MB)'),
  tmpSizeMB: opt('POLYKERNEL_TMP_MB', int(1), 'size of the writable /tmp (MB)'),
  startTimeoutMs: opt('POLYKERNEL_START_TIMEOUT_MS', int(100), 'how long a kernel may take to answer kernel_info after its start'),
  flushWindowMs: opt('POLYKERNEL_FLUSH_WINDOW_MS', int(10), 'v1 query: return "continued" with the output so far after this long'),
  completeTimeoutMs: opt('POLYKERNEL_COMPLETE_TIMEOUT_MS', int(100), 'v1 complete: how long the kernel may take to answer a completion (a kernel busy running code answers only after it); past it the call is 503'),
  maxOutputBytes: opt('POLYKERNEL_MAX_OUTPUT_BYTES', int(1024), 'output kept per v1 query; the rest is cut with a marker'),
  statsIntervalMs: opt('POLYKERNEL_STATS_INTERVAL_MS', int(100), 'how often memory and CPU of kernels are sampled'),
  maxBodyBytes: opt('POLYKERNEL_MAX_BODY_BYTES', int(1024), 'largest request body; more is 413 (a larger frame on the v1 streaming WebSocket closes it with 1009)'),
  uploadMaxFileBytes: opt('POLYKERNEL_UPLOAD_MAX_FILE_BYTES', int(1), 'v1 upload: largest file of an upload; more is 413 and nothing of the upload is written'),
  uploadMaxBytes: opt('POLYKERNEL_UPLOAD_MAX_BYTES', int(1024), 'v1 upload: largest upload request body (multipart, every part with its headers); more is 413 and nothing is written'),
  uploadMaxFiles: opt('POLYKERNEL_UPLOAD_MAX_FILES', int(1, 1000), 'v1 upload: most files in one upload (Backend.AI: 20); more is 400'),
  downloadMaxBytes: opt('POLYKERNEL_DOWNLOAD_MAX_BYTES', int(1), 'v1 download: most bytes of the files of one download together; more is 413'),
  downloadMaxFiles: opt('POLYKERNEL_DOWNLOAD_MAX_FILES', int(1, 1000), 'v1 download: most files in one download; more is 400'),
  listMaxEntries: opt('POLYKERNEL_LIST_MAX_ENTRIES', int(1, 100_000), 'v1 files: most entries a listing returns (the rest is cut, "truncated": true)'),
  filesTimeoutMs: opt('POLYKERNEL_FILES_TIMEOUT_MS', int(1000, 3_600_000), 'v1 upload, download, files: how long the transfer in the kernel\'s container may take at most (ms)'),
  prespawnCount: opt('KG_PRESPAWN_COUNT', int(0, 64), 'warm kernels kept ready for the default language'),
  poolSizes: opt('POLYKERNEL_POOL_SIZES', pairs(int(0, 64)), 'warm kernels per language, e.g. python3=2,javascript=1'),
  wsPingIntervalMs: opt('POLYKERNEL_WS_PING_INTERVAL_MS', int(0, 3_600_000), 'ping every channels (and v1 streaming) WebSocket this often and close one silent for three intervals (as jupyter_server); 0 = no pings'),
  poolRefillDelayMs: opt('POLYKERNEL_POOL_REFILL_DELAY_MS', int(0, 60_000), 'wait this long after a warm kernel is handed out before starting its replacement, so the start does not compete with the first run'),
  streamHighWaterBytes: opt('POLYKERNEL_STREAM_HIGH_WATER_BYTES', int(16384), 'v1 streaming WebSocket: while more than this is queued unread for a client, its run\'s output is not taken (it waits in the run, bounded by POLYKERNEL_MAX_OUTPUT_BYTES) and its frames are not read'),
  wsMaxBufferedBytes: opt('POLYKERNEL_WS_MAX_BUFFERED_BYTES', int(65536), 'output queued for one channels (or Piston /api/v2/connect) WebSocket that does not read it; past this the connection is closed (1008), the kernel\'s other clients are unaffected (a Piston run is ended)'),
  maxConnections: opt('POLYKERNEL_MAX_CONNECTIONS', int(0), 'most open TCP connections to the service (HTTP and WebSocket); more are refused at once; 0 = no limit'),
  maxConnectionsPerPeer: opt('POLYKERNEL_MAX_CONNECTIONS_PER_PEER', int(0), 'most open connections from one client address; more are refused at once; 0 = no limit (set it to 0 or high behind a proxy)'),
  headersTimeoutMs: opt('POLYKERNEL_HEADERS_TIMEOUT_MS', int(1000, 3_600_000), 'a connection must send its request headers within this long, else it is closed'),
  requestTimeoutMs: opt('POLYKERNEL_REQUEST_TIMEOUT_MS', int(1000, 3_600_000), 'a request (headers and body) must be received within this long, else it is closed (the run it starts may take longer)'),
  runTtlMs: opt('POLYKERNEL_RUN_TTL_MS', int(1000), 'v1: a run not continued for this long is discarded with its buffered output'),
  maxRunsPerKernel: opt('POLYKERNEL_MAX_RUNS_PER_KERNEL', int(1), 'v1: runs kept per kernel for "continue"; a new one past this discards the one least recently continued'),
  maxRunBufferedBytes: opt('POLYKERNEL_MAX_RUN_BUFFERED_BYTES', int(1024), 'v1: output buffered in all runs waiting for "continue"; past this the runs least recently continued are discarded'),
  keepKernelsOnShutdown: opt('POLYKERNEL_KEEP_KERNELS_ON_SHUTDOWN', bool, 'on SIGTERM leave kernels running for re-adoption instead of removing them'),
  logLevel: opt('POLYKERNEL_LOG_LEVEL', oneOf('debug', 'info', 'warn', 'error', 'silent'), 'log level'),
  notebookRoot: opt('KG_NOTEBOOK_ROOT', str, 'root directory of notebooks for /api/executions'),
  judgeLimits: opt('POLYKERNEL_JUDGE_LIMITS', judgeLimits, 'limits of a judged run when the submission sets none (name=value pairs; names and units as src/judge/model.ts RunLimits)'),
  judgeLimitCaps: opt('POLYKERNEL_JUDGE_LIMIT_CAPS', judgeLimits, 'largest limits a submission may ask for; more is 4xx naming the limit'),
  judgeCompileLimits: opt('POLYKERNEL_JUDGE_COMPILE_LIMITS', judgeLimits, 'limits of a compile step when the submission sets none'),
  judgeCompileLimitCaps: opt('POLYKERNEL_JUDGE_COMPILE_LIMIT_CAPS', judgeLimits, 'largest compile limits a submission may ask for'),
  judgeConcurrency: opt('POLYKERNEL_JUDGE_CONCURRENCY', concurrency, 'submissions judged at once (auto = the number of cores); more wait in the judging queue'),
  judgeQueueSize: opt('POLYKERNEL_JUDGE_QUEUE_SIZE', int(0), 'submissions that may wait for a judging slot; past it a submission is refused with 503 (as Judge0\'s MAX_QUEUE_SIZE)'),
  judgeWarm: opt('POLYKERNEL_JUDGE_WARM', pairs(int(0, 32)), 'warm judge sandboxes kept ready per language, e.g. python3=2,c=2 (each is used once, then replaced)'),
  judgeRuntime: opt('POLYKERNEL_JUDGE_RUNTIME', str, 'OCI runtime of judge sandboxes (runc, crun, runsc)'),
  judgeDiskMB: opt('POLYKERNEL_JUDGE_DISK_MB', int(1, 4096), 'size of a judge sandbox\'s work directory and of its /tmp, each (MB)'),
  judgeMaxTests: opt('POLYKERNEL_JUDGE_MAX_TESTS', int(1, 100_000), 'most test cases in one submission; more is 400'),
  judgeMaxFiles: opt('POLYKERNEL_JUDGE_MAX_FILES', int(1, 10_000), 'most source files in one submission (its checker\'s counted apart); more is 400'),
  judgeMaxBytes: opt('POLYKERNEL_JUDGE_MAX_BYTES', int(1024), 'most bytes of one submission: its files, every test\'s input and expected output, its checker; more is 413'),
  judgeMaxRunsPerTest: opt('POLYKERNEL_JUDGE_MAX_RUNS_PER_TEST', int(1, 1000), 'most runs of each test a submission may ask for (Judge0\'s number_of_runs, whose cap is 20)'),
  judgeMaxResultBytes: opt('POLYKERNEL_JUDGE_MAX_RESULT_BYTES', int(1024), 'most bytes of program output (stdout and stderr of every test together) a submission\'s result keeps; each test is judged on its whole output, what is kept past this is cut'),
  judge0Workers: opt('POLYKERNEL_JUDGE0_WORKERS', concurrency, 'Judge0 API: submissions taken from its queue at once (Processing); auto = the number of cores, as POLYKERNEL_JUDGE_CONCURRENCY\'s auto'),
  judge0MaxQueueSize: opt('POLYKERNEL_JUDGE0_MAX_QUEUE_SIZE', int(1), 'Judge0 API: submissions that may wait in the queue (Judge0\'s MAX_QUEUE_SIZE); a create past it is 503 {"error": "queue is full"}'),
  judge0MaxQueuePerClient: opt('POLYKERNEL_JUDGE0_MAX_QUEUE_PER_CLIENT', int(0), 'Judge0 API: submissions one client (its API key, else its address) may have waiting in the queue; a create past it is 429, so one client cannot fill the whole queue for the others; 0 = no limit beyond POLYKERNEL_JUDGE0_MAX_QUEUE_SIZE'),
  judge0ResultTtlS: opt('POLYKERNEL_JUDGE0_RESULT_TTL_S', int(1), 'Judge0 API: a finished submission is kept this long (s), then it is gone (404)'),
  judge0MaxKept: opt('POLYKERNEL_JUDGE0_MAX_KEPT', int(1), 'Judge0 API: finished submissions kept at most; past it the oldest are dropped before their TTL'),
  judge0MaxKeptMB: opt('POLYKERNEL_JUDGE0_MAX_KEPT_MB', int(1), 'Judge0 API: size of all kept submissions (sources, inputs, outputs) at most (MB); past it the oldest finished are dropped before their TTL'),
  judge0EnableWait: opt('POLYKERNEL_JUDGE0_ENABLE_WAIT_RESULT', bool, 'Judge0 API: whether ?wait=true is allowed (Judge0\'s ENABLE_WAIT_RESULT)'),
  judge0WaitTimeoutMs: opt('POLYKERNEL_JUDGE0_WAIT_TIMEOUT_MS', int(100, 600_000), 'Judge0 API: ?wait=true answers after this long at most (ms), with the submission as it is then (In Queue or Processing)'),
  judge0MaxBatchSize: opt('POLYKERNEL_JUDGE0_MAX_BATCH_SIZE', int(1, 1000), 'Judge0 API: submissions in one batch (Judge0\'s MAX_SUBMISSION_BATCH_SIZE)'),
  judge0EnableSubmissionDelete: opt('POLYKERNEL_JUDGE0_ENABLE_SUBMISSION_DELETE', bool, 'Judge0 API: whether an authorized caller may DELETE /submissions/:token (Judge0\'s ENABLE_SUBMISSION_DELETE)'),
  judge0AuthzToken: opt('POLYKERNEL_JUDGE0_AUTHZ_TOKEN', str, 'Judge0 API: the X-Auth-User token (Judge0\'s AUTHZ_TOKEN) that authorizes listing and deleting every submission; empty = only the admin token (or the open mode) does'),
  judge0StatusIds: opt('POLYKERNEL_JUDGE0_STATUS_IDS', oneOf('extended', 'judge0'), 'Judge0 API: extended = Memory Limit Exceeded is status 15 and Output Limit Exceeded 16; judge0 = they answer Judge0\'s own ids 12 and 8 (with our description), for clients that know only ids 1-14'),
  judge0EnableCallbacks: opt('POLYKERNEL_JUDGE0_ENABLE_CALLBACKS', bool, 'Judge0 API: whether callback_url is allowed (Judge0\'s ENABLE_CALLBACKS)'),
  judge0CallbackHosts: opt('POLYKERNEL_JUDGE0_CALLBACK_HOSTS', list, 'Judge0 API: where callbacks may go: host names, IP addresses or CIDR ranges (e.g. 127.0.0.1,10.0.0.0/8,hooks.example.com), * = anywhere; empty = public addresses only (no loopback, private, link-local or metadata address)'),
  judge0CallbackMaxTries: opt('POLYKERNEL_JUDGE0_CALLBACKS_MAX_TRIES', int(1, 10), 'Judge0 API: tries of a callback before giving up (Judge0\'s CALLBACKS_MAX_TRIES); a try fails on a network error, a timeout or a non-2xx answer'),
  judge0CallbackTimeoutMs: opt('POLYKERNEL_JUDGE0_CALLBACKS_TIMEOUT_MS', int(100, 60_000), 'Judge0 API: timeout of one callback try (ms; Judge0\'s CALLBACKS_TIMEOUT is 5 s)'),
  judge0CallbackBackoffMs: opt('POLYKERNEL_JUDGE0_CALLBACKS_BACKOFF_MS', int(0, 60_000), 'Judge0 API: wait before the second try (ms), doubled before each later one'),
  judge0EnableAdditionalFiles: opt('POLYKERNEL_JUDGE0_ENABLE_ADDITIONAL_FILES', bool, 'Judge0 API: whether additional_files (a Base64 zip) is allowed (Judge0\'s ENABLE_ADDITIONAL_FILES)'),
  judge0MaxExtractSizeKB: opt('POLYKERNEL_JUDGE0_MAX_EXTRACT_SIZE_KB', int(1, 1_048_576), 'Judge0 API: largest unpacked size of additional_files (KB; Judge0\'s MAX_EXTRACT_SIZE)'),
  maxConcurrentExecutions: opt('POLYKERNEL_MAX_CONCURRENT_EXECUTIONS', int(1), 'notebook executions run at once; more wait in a queue'),
} as const;

type Options = typeof OPTIONS;
export type Config = { readonly [K in keyof Options]: ReturnType<Options[K]['parse']> };

export { ConfigError };

/** The defaults shipped in config/defaults.json, as raw strings keyed by variable name. */
export function readDefaults(file = new URL('../../../config/defaults.json', import.meta.url)): Record<string, string> {
  return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
}

/**
 * Reads every option from `env` (process.env in production, a plain object in tests), falling back to the
 * defaults file. Defaults go through the same parsers, so a bad default fails as loudly as a bad variable.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Config> = {},
  defaults: Record<string, string> = readDefaults(),
): Config {
  const out: Record<string, unknown> = {};
  for (const [key, option] of Object.entries(OPTIONS) as [string, Option<unknown>][]) {
    const fromEnv = env[option.env];
    const raw = fromEnv !== undefined ? fromEnv : defaults[option.env];
    if (raw === undefined) throw new ConfigError(`${option.env} has no default in config/defaults.json`);
    out[key] = option.parse(raw, option.env);
  }
  Object.assign(out, overrides);
  const config = out as Config;
  // Node refuses such a server with a RangeError at listen time: said here, naming both variables.
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    throw new ConfigError(
      `POLYKERNEL_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) must not be larger than POLYKERNEL_REQUEST_TIMEOUT_MS (${config.requestTimeoutMs}): the headers are part of the request`,
    );
  }
  if (config.role !== 'all') {
    if (!config.clusterKeyFile) {
      throw new ConfigError(`POLYKERNEL_ROLE=${config.role} needs POLYKERNEL_CLUSTER_KEY_FILE: the gateway–agent link is authenticated and encrypted with the cluster key (make one with \`npm run --silent cluster-key\`)`);
    }
    if (!config.redisUrl) throw new ConfigError(`POLYKERNEL_ROLE=${config.role} needs REDIS_URL: agents register there and gateways find them there`);
    if (config.role === 'agent' && !config.agentListen) throw new ConfigError('POLYKERNEL_ROLE=agent needs POLYKERNEL_AGENT_LISTEN (host:port of its link)');
    if (config.role === 'agent' && !config.agentAdvertise && /^(\*|0\.0\.0\.0|\[::\]):/.test(config.agentListen)) {
      throw new ConfigError('POLYKERNEL_AGENT_LISTEN listens on every interface: set POLYKERNEL_AGENT_ADVERTISE to the host:port gateways reach');
    }
  }
  // A claim that lapsed while its kernel was still starting within its timeout would let another create
  // take the slot: a ready kernel then finds the limit reached and fails.
  if (config.kernelClaimTtlMs <= config.startTimeoutMs) {
    throw new ConfigError(
      `POLYKERNEL_KERNEL_CLAIM_TTL_MS (${config.kernelClaimTtlMs}) must be longer than POLYKERNEL_START_TIMEOUT_MS (${config.startTimeoutMs}): a kernel's claim must outlast its start`,
    );
  }
  return Object.freeze(out) as Config;
}
