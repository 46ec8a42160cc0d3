/**
 * loadConfig over a plain env object: defaults from config/defaults.json, one default per option, and
 * bad values stopping the start with a message that names the variable.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, OPTIONS, readDefaults } from '../../src/config/index.js';

const DEFAULTS_FILE = new URL('../../../config/defaults.json', import.meta.url);
const defaultsFile = JSON.parse(readFileSync(DEFAULTS_FILE, 'utf8')) as Record<string, unknown>;

function failsNaming(t: import('ava').ExecutionContext, env: Record<string, string>, ...patterns: RegExp[]): void {
  const error = t.throws(() => loadConfig(env), { instanceOf: ConfigError }, JSON.stringify(env));
  for (const pattern of patterns) t.regex(error?.message ?? '', pattern, JSON.stringify(env));
}

test('every option has a string default in config/defaults.json, and the file has no stray keys', (t) => {
  const optionVars = Object.values(OPTIONS).map((option) => option.env);
  t.is(new Set(optionVars).size, optionVars.length, 'two options read the same variable');
  t.deepEqual([...Object.keys(defaultsFile)].sort(), [...optionVars].sort());
  for (const [name, value] of Object.entries(defaultsFile)) t.is(typeof value, 'string', name);
});

test('readDefaults reads the shipped config/defaults.json', (t) => {
  t.deepEqual(readDefaults(), defaultsFile);
});

test('with an empty env every value is the parsed default from config/defaults.json', (t) => {
  const config = loadConfig({});
  for (const [key, option] of Object.entries(OPTIONS)) {
    const parse = option.parse as (raw: string, name: string) => unknown;
    t.deepEqual(config[key as keyof typeof config], parse(defaultsFile[option.env] as string, option.env), option.env);
  }
  // Spot checks that the parsed types are the intended ones, not raw strings.
  t.is(config.port, 8888);
  t.is(config.ip, '127.0.0.1');
  t.is(config.listKernels, true);
  t.is(config.keepKernelsOnShutdown, false);
  t.deepEqual(config.envWhitelist, []);
  t.deepEqual(config.poolSizes, {});
  t.deepEqual(config.containerRuntimeByLang, {});
  t.is(config.cpus, 1);
  t.is(config.logLevel, 'info');
  t.is(config.redisUrl, '');
  t.is(config.maxOutputBytes, 1048576);
});

test('a variable in env wins over its default; other options keep theirs', (t) => {
  const config = loadConfig({ KG_PORT: '9000', KG_AUTH_TOKEN: 's3cret', POLYKERNEL_CPUS: '0.5', UNRELATED: 'x' });
  t.is(config.port, 9000);
  t.is(config.authToken, 's3cret');
  t.is(config.cpus, 0.5);
  t.is(config.ip, '127.0.0.1');
});

test('an empty string is a value for string options (e.g. no auth token), not "use the default"', (t) => {
  const config = loadConfig({ KG_DEFAULT_KERNEL_NAME: '' }, {}, { ...readDefaults(), KG_AUTH_TOKEN: 'from-defaults' });
  t.is(config.defaultKernelName, '');
  t.is(config.authToken, 'from-defaults');
  t.is(loadConfig({ KG_AUTH_TOKEN: '' }, {}, { ...readDefaults(), KG_AUTH_TOKEN: 'from-defaults' }).authToken, '');
});

test('booleans accept 1/true/yes/on and 0/false/no/off in any case', (t) => {
  for (const raw of ['1', 'true', 'TRUE', 'Yes', 'on']) t.true(loadConfig({ KG_LIST_KERNELS: raw }).listKernels, raw);
  for (const raw of ['0', 'false', 'False', 'no', 'OFF']) t.false(loadConfig({ KG_LIST_KERNELS: raw }).listKernels, raw);
});

test('lists are split on commas, trimmed, and empty items dropped', (t) => {
  t.deepEqual(loadConfig({ KG_ENV_WHITELIST: ' HOME, LANG ,,TZ, ' }).envWhitelist, ['HOME', 'LANG', 'TZ']);
  t.deepEqual(loadConfig({ KG_ENV_WHITELIST: '' }).envWhitelist, []);
  t.deepEqual(loadConfig({ KG_ENV_WHITELIST: 'ONE' }).envWhitelist, ['ONE']);
});

test('pairs are name=value items, trimmed, each value through its own parser', (t) => {
  t.deepEqual(loadConfig({ POLYKERNEL_POOL_SIZES: 'python3=2, javascript = 1,' }).poolSizes, { python3: 2, javascript: 1 });
  t.deepEqual(loadConfig({ POLYKERNEL_RUNTIME_BY_LANG: 'python3=runsc,r=runc' }).containerRuntimeByLang, { python3: 'runsc', r: 'runc' });
  t.deepEqual(loadConfig({ POLYKERNEL_POOL_SIZES: '' }).poolSizes, {});
});

test('KG_PORT=abc fails naming KG_PORT and the value', (t) => {
  failsNaming(t, { KG_PORT: 'abc' }, /KG_PORT/, /"abc"/, /whole number/);
});

test('whole numbers outside their range, fractional, blank or non-decimal fail naming the variable', (t) => {
  for (const raw of ['65536', '-1', '80.5', '', ' ', '0x50', '1e3', '8080abc']) {
    failsNaming(t, { KG_PORT: raw }, /KG_PORT/);
  }
  failsNaming(t, { KG_PRESPAWN_COUNT: '65' }, /KG_PRESPAWN_COUNT/, /0 to 64/);
  failsNaming(t, { KG_MAX_KERNELS: '' }, /KG_MAX_KERNELS/);
  failsNaming(t, { POLYKERNEL_DEFAULT_TIMEOUT_MS: '0' }, /POLYKERNEL_DEFAULT_TIMEOUT_MS/);
  t.is(loadConfig({ KG_PORT: '0' }).port, 0);
  t.is(loadConfig({ KG_PORT: '65535' }).port, 65535);
});

test('numbers below their minimum or not numbers fail naming the variable', (t) => {
  for (const raw of ['0', 'abc', '', 'Infinity', '-1']) failsNaming(t, { POLYKERNEL_CPUS: raw }, /POLYKERNEL_CPUS/);
  t.is(loadConfig({ POLYKERNEL_CPUS: '0.25' }).cpus, 0.25);
});

test('KG_LIST_KERNELS=maybe fails naming KG_LIST_KERNELS', (t) => {
  failsNaming(t, { KG_LIST_KERNELS: 'maybe' }, /KG_LIST_KERNELS/, /true or false/, /"maybe"/);
  failsNaming(t, { KG_LIST_KERNELS: '' }, /KG_LIST_KERNELS/);
});

test('POLYKERNEL_POOL_SIZES=python3 (no =n) fails naming the variable', (t) => {
  failsNaming(t, { POLYKERNEL_POOL_SIZES: 'python3' }, /POLYKERNEL_POOL_SIZES/, /name=value/);
  failsNaming(t, { POLYKERNEL_POOL_SIZES: '=2' }, /POLYKERNEL_POOL_SIZES/, /name=value/);
  failsNaming(t, { POLYKERNEL_POOL_SIZES: ' =2' }, /POLYKERNEL_POOL_SIZES/, /name=value/);
  failsNaming(t, { POLYKERNEL_POOL_SIZES: 'python3=lots' }, /POLYKERNEL_POOL_SIZES/, /"lots"/);
  failsNaming(t, { POLYKERNEL_POOL_SIZES: 'python3=65' }, /POLYKERNEL_POOL_SIZES/, /0 to 64/);
  // A second "=" is part of the value, which then fails its parser instead of being dropped.
  failsNaming(t, { POLYKERNEL_POOL_SIZES: 'python3=2=3' }, /POLYKERNEL_POOL_SIZES/);
});

test('an enumerated option names its allowed values', (t) => {
  failsNaming(t, { POLYKERNEL_LOG_LEVEL: 'verbose' }, /POLYKERNEL_LOG_LEVEL/, /debug, info, warn, error, silent/);
  t.is(loadConfig({ POLYKERNEL_LOG_LEVEL: 'silent' }).logLevel, 'silent');
});

test('a bad or missing default fails as loudly as a bad variable', (t) => {
  const { KG_PORT: _port, ...withoutPort } = readDefaults();
  const missing = t.throws(() => loadConfig({}, {}, withoutPort), { instanceOf: ConfigError });
  t.regex(missing?.message ?? '', /KG_PORT has no default/);
  t.is(loadConfig({ KG_PORT: '1' }, {}, withoutPort).port, 1);
  const bad = t.throws(() => loadConfig({}, {}, { ...readDefaults(), KG_MAX_KERNELS: 'many' }), { instanceOf: ConfigError });
  t.regex(bad?.message ?? '', /KG_MAX_KERNELS/);
});

test('overrides replace parsed values, and the config is frozen', (t) => {
  const config = loadConfig({ KG_PORT: '1234' }, { port: 0, instance: 'test' });
  t.is(config.port, 0);
  t.is(config.instance, 'test');
  t.true(Object.isFrozen(config));
  t.throws(() => {
    (config as { port: number }).port = 1;
  }, { instanceOf: TypeError });
});

test('POLYKERNEL_CONTAINER_LABELS: key=value pairs, never one of the service\'s own org.polykernel.* labels', (t) => {
  t.deepEqual(loadConfig({}).containerLabels, {});
  t.deepEqual(loadConfig({ POLYKERNEL_CONTAINER_LABELS: 'com.docker.compose.project=pk,com.docker.compose.oneoff=False' }).containerLabels, {
    'com.docker.compose.project': 'pk',
    'com.docker.compose.oneoff': 'False',
  });
  failsNaming(t, { POLYKERNEL_CONTAINER_LABELS: 'org.polykernel.instance=other' }, /POLYKERNEL_CONTAINER_LABELS/, /org\.polykernel\.instance/);
  failsNaming(t, { POLYKERNEL_CONTAINER_LABELS: 'no-value' }, /POLYKERNEL_CONTAINER_LABELS/);
});

test('a headers timeout longer than the request timeout is refused at load, naming both variables (Node would throw a RangeError at listen)', (t) => {
  const error = t.throws(() => loadConfig({ POLYKERNEL_REQUEST_TIMEOUT_MS: '4000', POLYKERNEL_HEADERS_TIMEOUT_MS: '10000' }), { instanceOf: ConfigError });
  t.regex(error!.message, /POLYKERNEL_HEADERS_TIMEOUT_MS \(10000\) must not be larger than POLYKERNEL_REQUEST_TIMEOUT_MS \(4000\)/);
  t.is(loadConfig({ POLYKERNEL_REQUEST_TIMEOUT_MS: '4000', POLYKERNEL_HEADERS_TIMEOUT_MS: '4000' }).requestTimeoutMs, 4000);
});

test('the kernel claim TTL and the leader lease are whole milliseconds within their bounds; the claim must outlast a kernel start', (t) => {
  const config = loadConfig({});
  t.is(config.kernelClaimTtlMs, 60_000);
  t.is(config.leaderLeaseMs, 10_000);
  failsNaming(t, { POLYKERNEL_LEADER_LEASE_MS: '999' }, /POLYKERNEL_LEADER_LEASE_MS/, /1000 to 600000/);
  failsNaming(t, { POLYKERNEL_LEADER_LEASE_MS: '10s' }, /POLYKERNEL_LEADER_LEASE_MS/);
  failsNaming(t, { POLYKERNEL_KERNEL_CLAIM_TTL_MS: '0' }, /POLYKERNEL_KERNEL_CLAIM_TTL_MS/);
  const error = t.throws(() => loadConfig({ POLYKERNEL_START_TIMEOUT_MS: '60000', POLYKERNEL_KERNEL_CLAIM_TTL_MS: '60000' }), { instanceOf: ConfigError });
  t.regex(error!.message, /POLYKERNEL_KERNEL_CLAIM_TTL_MS \(60000\) must be longer than POLYKERNEL_START_TIMEOUT_MS \(60000\)/);
  t.is(loadConfig({ POLYKERNEL_START_TIMEOUT_MS: '60000', POLYKERNEL_KERNEL_CLAIM_TTL_MS: '90000' }).kernelClaimTtlMs, 90_000);
});
