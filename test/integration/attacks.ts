/**
 * The attack table of the sandbox tests (issue #6): what a stranger's program tries from inside a kernel.
 *
 * Every attack has a shell form, run beside the kernel through v1 batch mode (every image has /bin/sh, so
 * it runs against every image), and where it is written, a form in the language itself, run through v1
 * query mode (the code path a kernel's users actually have).
 *
 * Each probe prints one line: `BLOCKED <what>` when the attack failed, `BREACH <what>` when it worked,
 * `SKIP <why>` when it could not be tried (a tool the image lacks), `CONTROL <what>` for a positive control
 * (something that must work, so that a blocked probe means the sandbox and not a broken tool), and
 * `FAILED <what>` when a control did not work. The last line is `END`, so a script that died half-way
 * does not pass. `check` (below) reads that output.
 */

export interface AttackContext {
  /** The attacking kernel. */
  kernelId: string;
  /** Another live kernel of the same service: the target. Its socket directory is <stateDir>/<id>. */
  otherKernelId: string;
  /** The other kernel's HMAC key: a secret that must not be readable from here. */
  otherKey: string;
  /** The service's state directory on the host (every kernel's socket directory). */
  stateDir: string;
  /** The directory the service runs from (its code and configuration). */
  serviceDir: string;
  /** The host's address on Docker's default bridge network. */
  hostGateway: string;
  /** A TCP port the test listens on, on every host address. */
  hostPort: number;
  /** The service's own TCP port (on the host's loopback). */
  servicePort: number;
  /** The service's KG_AUTH_TOKEN: must not reach any kernel. */
  secret: string;
}

export interface Attack {
  /** Short name, used in test titles. */
  name: string;
  /** POSIX sh (bash where it says so), run through batch mode. */
  shell: (ctx: AttackContext) => string;
  /** The attack in a kernel's own language, keyed by kernel name; run through query mode. */
  code: Partial<Record<string, (ctx: AttackContext) => string>>;
}

/**
 * Helpers every shell form starts with. The marker comment tells the attack's own processes (whose command
 * lines contain the script, patterns included) from the ones it looks for.
 */
const MARKER = 'polykernel-attack-script';
const SH_PRELUDE = `# ${MARKER}
blocked() { echo "BLOCKED $*"; }
breach() { echo "BREACH $*"; }
skip() { echo "SKIP $*"; }
have() { command -v "$1" >/dev/null 2>&1; }
`;

const sh = (body: string) => `${SH_PRELUDE}\n${body}\necho END\n`;

const PY_PRELUDE = `
def blocked(*a): print("BLOCKED", *a, flush=True)
def breach(*a): print("BREACH", *a, flush=True)
`;

const py = (body: string) => `${PY_PRELUDE}\n${body}\nprint("END")\n`;

/** The runner's JavaScript kernel: CommonJS require and top-level await. */
const JS_PRELUDE = `
const blocked = (...a) => console.log("BLOCKED", ...a);
const breach = (...a) => console.log("BREACH", ...a);
const fs = require("fs");
const { spawnSync } = require("child_process");
/** "connected" or the error code of a TCP (or unix socket) connection attempt. */
const connect = (options) => new Promise((resolve) => {
  const socket = require("net").connect({ ...options, timeout: 5000 });
  socket.on("connect", () => { socket.destroy(); resolve("connected"); });
  socket.on("error", (e) => resolve(e.code));
  socket.on("timeout", () => { socket.destroy(); resolve("timeout"); });
});
`;

const js = (body: string) => `${JS_PRELUDE}\n${body}\nconsole.log("END");\n`;

/** The shell probes that read files, shared by the shell attack and the bash kernel. */
const readTargets = (ctx: AttackContext) => [
  `${ctx.serviceDir}/package.json`,
  `${ctx.serviceDir}/config/defaults.json`,
  `${ctx.stateDir}/${ctx.otherKernelId}/conn.json`,
  `/${ctx.otherKernelId}/conn.json`,
  `/conn/../${ctx.otherKernelId}/conn.json`,
  `/proc/1/root${ctx.stateDir}/${ctx.otherKernelId}/conn.json`,
  '/etc/docker/daemon.json',
  '/var/lib/docker',
  '/root',
  '/etc/shadow',
];

export const ATTACKS: Attack[] = [
  {
    name: 'network: connect to the internet',
    shell: () =>
      sh(`
if ! have bash; then skip "no bash for /dev/tcp"; else
  for target in 1.1.1.1/53 8.8.8.8/53 151.101.2.132/80 151.101.2.132/443; do
    if timeout 5 bash -c "exec 3<>/dev/tcp/$target" 2>/dev/null; then breach "connected to $target"; else blocked "connect $target"; fi
  done
fi
if have getent; then
  if getent hosts deb.debian.org >/dev/null 2>&1; then breach "resolved deb.debian.org"; else blocked "dns"; fi
fi
others=$(awk -F: 'NR > 2 { gsub(/ /, "", $1); if ($1 != "lo") print $1 }' /proc/net/dev)
if [ -n "$others" ]; then breach "network interfaces: $others"; else blocked "only the loopback interface"; fi
`),
    code: {
      javascript: () =>
        js(`
for (const [host, port] of [["1.1.1.1", 53], ["8.8.8.8", 53], ["151.101.2.132", 443]]) {
  const result = await connect({ host, port });
  (result === "connected" ? breach : blocked)("connect", host, port, result);
}
try {
  await require("dns").promises.lookup("deb.debian.org");
  breach("resolved deb.debian.org");
} catch (e) {
  blocked("dns", e.code);
}
const names = Object.keys(require("os").networkInterfaces());
(names.every((name) => name === "lo") ? blocked : breach)("interfaces", names.join(","));
`),
      python3: () =>
        py(`
import socket
for host, port in [("1.1.1.1", 53), ("8.8.8.8", 53), ("151.101.2.132", 443), ("2606:4700:4700::1111", 53)]:
    try:
        socket.create_connection((host, port), timeout=5).close()
        breach("connected to", host, port)
    except OSError as e:
        blocked("connect", host, port, e.strerror)
try:
    socket.getaddrinfo("deb.debian.org", 443)
    breach("resolved deb.debian.org")
except OSError:
    blocked("dns")
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53))
    breach("sent a UDP datagram to 8.8.8.8")
except OSError as e:
    blocked("udp", e.strerror)
names = [name for _, name in socket.if_nameindex()]
(blocked if names == ["lo"] else breach)("interfaces", names)
`),
    },
  },
  {
    name: 'network: connect to the host',
    // "Connection refused" from a host address means a route to the host exists: that is a breach too.
    // On 127.0.0.1 it is the container's own loopback, where nothing listens: refused is expected there.
    shell: (ctx) =>
      sh(`
probe() {
  out=$(timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); rc=$?
  if [ $rc = 0 ]; then breach "connected to $3 at $1:$2"
  elif [ "$1" != 127.0.0.1 ] && echo "$out" | grep -q 'refused'; then breach "$3 at $1:$2 answered (refused): a route to the host"
  else blocked "$3 at $1:$2"; fi
}
if ! have bash; then skip "no bash for /dev/tcp"; else
  probe ${ctx.hostGateway} ${ctx.hostPort} "the test's listener"
  probe ${ctx.hostGateway} ${ctx.servicePort} "the service"
  probe 127.0.0.1 ${ctx.servicePort} "the service on loopback"
  probe 127.0.0.1 6379 "redis on loopback"
  probe ${ctx.hostGateway} 6379 "redis"
  probe ${ctx.hostGateway} 2375 "a Docker engine on TCP"
fi
for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /var/run/redis/redis-server.sock; do
  if [ -e "$s" ]; then breach "$s exists"; else blocked "$s"; fi
done
if grep -qE 'docker|containerd|redis' /proc/net/unix; then breach "host unix sockets in /proc/net/unix"; else blocked "/proc/net/unix shows no host socket"; fi
`),
    code: {
      javascript: (ctx) =>
        js(`
for (const [host, port, what] of [["${ctx.hostGateway}", ${ctx.hostPort}, "the test's listener"], ["${ctx.hostGateway}", ${ctx.servicePort}, "the service"],
                                  ["127.0.0.1", ${ctx.servicePort}, "the service on loopback"], ["127.0.0.1", 6379, "redis on loopback"]]) {
  const result = await connect({ host, port });
  const reached = result === "connected" || (result === "ECONNREFUSED" && host !== "127.0.0.1");
  (reached ? breach : blocked)(what, result);
}
for (const path of ["/var/run/docker.sock", "/run/containerd/containerd.sock"]) {
  const result = await connect({ path });
  (result === "connected" ? breach : blocked)(path, result);
}
`),
      python3: (ctx) =>
        py(`
import socket
for host, port, what in [("${ctx.hostGateway}", ${ctx.hostPort}, "the test's listener"), ("${ctx.hostGateway}", ${ctx.servicePort}, "the service"),
                         ("127.0.0.1", ${ctx.servicePort}, "the service on loopback"), ("127.0.0.1", 6379, "redis on loopback")]:
    try:
        socket.create_connection((host, port), timeout=5).close()
        breach("connected to", what)
    except ConnectionRefusedError:
        (blocked if host == "127.0.0.1" else breach)(what, "refused")
    except OSError as e:
        blocked(what, e.strerror)
for path in ["/var/run/docker.sock", "/run/containerd/containerd.sock"]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        breach("connected to", path)
    except OSError as e:
        blocked(path, e.strerror)
`),
    },
  },
  {
    name: "files: read the service's files and another kernel's directory",
    shell: (ctx) =>
      sh(`
for f in ${readTargets(ctx).map((t) => `'${t}'`).join(' ')}; do
  if [ -d "$f" ]; then
    if ls "$f" >/dev/null 2>&1 || [ -r "$f" -a -x "$f" ]; then breach "listed $f"; else blocked "$f"; fi
  elif cat "$f" >/dev/null 2>&1; then breach "read $f"; else blocked "$f"; fi
done
if grep -qF '${ctx.otherKernelId}' /proc/self/mountinfo; then breach "the other kernel's directory is mounted"; else blocked "mountinfo"; fi
if grep -rqsF '${ctx.otherKey}' /conn /home/work /tmp /proc/self/environ /proc/1/environ; then breach "found the other kernel's key"; else blocked "the other kernel's key"; fi
if grep -rqsF '${ctx.secret}' /conn /home/work /tmp /proc/self/environ /proc/1/environ; then breach "found the service's token"; else blocked "the service's token"; fi
leaked=$(env | grep -E '^(KG_|POLYKERNEL_|REDIS)' | cut -d= -f1 | tr '\\n' ' ')
if [ -n "$leaked" ]; then breach "service variables in the environment: $leaked"; else blocked "environment"; fi
`),
    code: {
      javascript: (ctx) =>
        js(`
for (const path of ${JSON.stringify(readTargets(ctx))}) {
  try {
    if (fs.statSync(path).isDirectory()) fs.readdirSync(path);
    else fs.readFileSync(path);
    breach("read", path);
  } catch (e) {
    blocked(path, e.code);
  }
}
(fs.readFileSync("/proc/self/mountinfo", "utf8").includes("${ctx.otherKernelId}") ? breach : blocked)("the other kernel's directory in mountinfo");
const env = JSON.stringify(process.env);
(env.includes("${ctx.secret}") || env.includes("${ctx.otherKey}") ? breach : blocked)("secrets in the environment");
const leaked = Object.keys(process.env).filter((k) => /^(KG_|POLYKERNEL_|REDIS)/.test(k));
(leaked.length ? breach : blocked)("service variables in the environment", leaked.join(","));
`),
      python3: (ctx) =>
        py(`
import os
for path in ${JSON.stringify(readTargets(ctx))}:
    try:
        if os.path.isdir(path):
            os.listdir(path)
            breach("listed", path)
        else:
            open(path, "rb").read(1)
            breach("read", path)
    except OSError as e:
        blocked(path, e.strerror)
mountinfo = open("/proc/self/mountinfo").read()
(breach if "${ctx.otherKernelId}" in mountinfo else blocked)("the other kernel's directory in mountinfo")
env = "\\n".join(f"{k}={v}" for k, v in os.environ.items())
(breach if "${ctx.secret}" in env or "${ctx.otherKey}" in env else blocked)("secrets in the environment")
leaked = [k for k in os.environ if k.startswith(("KG_", "POLYKERNEL_", "REDIS"))]
(breach if leaked else blocked)("service variables in the environment", leaked)
`),
    },
  },
  {
    name: "processes: see the host's or another kernel's",
    // The kernel's own command line is /proc/1's after "docker-init -- ": with a shared PID namespace the
    // other kernel's process (same image, same command) would show up twice.
    shell: (ctx) =>
      sh(`
n=0
for p in /proc/[0-9]*; do
  c=$(tr '\\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
  n=$((n + 1))
  case "$c" in *${MARKER}*) continue;; esac
  case "$c" in *dockerd*|*containerd*|*redis-server*|*runsc*|*systemd*|*'${ctx.serviceDir}'*) breach "sees host process \${p#/proc/}: $c";; esac
done
if [ $n -gt 20 ]; then breach "sees $n processes"; else blocked "sees only its own $n processes"; fi
kernel=$(tr '\\0' ' ' < /proc/1/cmdline | sed 's/^.* -- //')
same=0
for p in /proc/[0-9]*; do [ "$(tr '\\0' ' ' < "$p/cmdline" 2>/dev/null)" = "$kernel" ] && same=$((same + 1)); done
if [ $same -gt 1 ]; then breach "$same processes run '$kernel': another kernel's are visible"; else blocked "one kernel process"; fi
`),
    code: {
      javascript: (ctx) =>
        js(`
const cmdlines = {};
for (const pid of fs.readdirSync("/proc").filter((p) => /^\\d+$/.test(p))) {
  try {
    cmdlines[pid] = fs.readFileSync("/proc/" + pid + "/cmdline", "utf8").replaceAll("\\0", " ");
  } catch {}
}
const hosty = Object.values(cmdlines).filter((c) => ["dockerd", "containerd", "redis-server", "runsc", "systemd", "${ctx.serviceDir}"].some((w) => c.includes(w)));
(hosty.length ? breach : blocked)("host processes visible", hosty.join(" | "));
const kernel = cmdlines["1"].split(" -- ")[1];
const kernels = Object.values(cmdlines).filter((c) => c === kernel).length;
(kernels !== 1 ? breach : blocked)("kernel processes visible:", kernels);
(Object.keys(cmdlines).length > 20 ? breach : blocked)("processes visible:", Object.keys(cmdlines).length);
`),
      python3: (ctx) =>
        py(`
import os
pids = [p for p in os.listdir("/proc") if p.isdigit()]
cmdlines = {}
for p in pids:
    try:
        cmdlines[p] = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
    except OSError:
        pass
hosty = [c for c in cmdlines.values() if any(w in c for w in ("dockerd", "containerd", "redis-server", "runsc", "systemd", "${ctx.serviceDir}"))]
(breach if hosty else blocked)("host processes visible", hosty)
# The kernel's command line is /proc/1's (docker-init) after "--": twice would be another kernel's too.
kernel = cmdlines["1"].split(" -- ", 1)[1]
kernels = [c for c in cmdlines.values() if c == kernel]
(breach if len(kernels) != 1 else blocked)("kernel processes visible:", len(kernels))
(breach if len(cmdlines) > 20 else blocked)("processes visible:", len(cmdlines))
`),
    },
  },
  {
    name: 'privileges: gain a capability or root',
    shell: () =>
      sh(`
caps=$(awk '/^Cap(Prm|Eff|Bnd|Amb):/ { print $2 }' /proc/self/status | sort -u | tr '\\n' ' ')
if [ "$caps" = "0000000000000000 " ]; then blocked "no capabilities"; else breach "capabilities: $caps"; fi
if [ "$(id -u)" = 0 ]; then breach "runs as root"; else blocked "uid $(id -u)"; fi
if have unshare; then
  for args in "-r id -u" "-U id -u" "-m true" "-n true" "-p -f true" "-i true"; do
    if out=$(unshare $args 2>&1); then breach "unshare $args: $out"; else blocked "unshare $args"; fi
  done
else skip "no unshare"; fi
mkdir -p /tmp/mnt
if mount -t tmpfs none /tmp/mnt 2>/dev/null; then breach "mounted a tmpfs"; else blocked "mount"; fi
if have chroot && chroot / true 2>/dev/null; then breach "chroot"; else blocked "chroot"; fi
if have su && su -c true root </dev/null >/dev/null 2>&1; then breach "su to root"; else blocked "su"; fi
# A setuid-root binary runs with the caller's effective uid (no-new-privileges): read it while it waits.
if [ -u /usr/bin/passwd ]; then
  sleep 3 | /usr/bin/passwd >/dev/null 2>&1 &
  pid=$!
  sleep 1
  euid=$(awk '/^Uid:/ { print $3 }' /proc/$pid/status 2>/dev/null)
  kill $pid 2>/dev/null
  if [ -z "$euid" ]; then skip "passwd exited before it could be read"
  elif [ "$euid" = 0 ]; then breach "setuid passwd runs with euid 0"
  else blocked "setuid passwd runs with euid $euid"; fi
else skip "no setuid passwd"; fi
`),
    code: {
      javascript: () =>
        js(`
for (const [name, call] of [["setuid", () => process.setuid(0)], ["setgid", () => process.setgid(0)], ["setgroups", () => process.setgroups([0])]]) {
  try {
    call();
    breach(name, "succeeded");
  } catch (e) {
    blocked(name, e.code);
  }
}
const status = fs.readFileSync("/proc/self/status", "utf8");
const caps = new Set([...status.matchAll(/^Cap(Prm|Eff|Bnd):\\s+(\\w+)$/gm)].map((m) => m[2]));
(caps.size === 1 && caps.has("0000000000000000") ? blocked : breach)("capabilities", [...caps].join(","));
for (const args of [["-r", "id", "-u"], ["-U", "id", "-u"], ["-m", "true"], ["-n", "true"]]) {
  const r = spawnSync("unshare", args, { encoding: "utf8" });
  (r.status === 0 ? breach : blocked)("unshare", args.join(" "), (r.stdout + r.stderr).trim());
}
const m = spawnSync("mount", ["-t", "tmpfs", "none", "/tmp"], { encoding: "utf8" });
(m.status === 0 ? breach : blocked)("mount");
`),
      python3: () =>
        py(`
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
for name, flag in [("NEWUSER", 0x10000000), ("NEWNS", 0x20000), ("NEWPID", 0x20000000), ("NEWNET", 0x40000000), ("NEWUTS", 0x04000000), ("NEWIPC", 0x08000000)]:
    (breach if libc.unshare(flag) == 0 else blocked)("unshare", name)
for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/")):
    try:
        call()
        breach("a root-only call succeeded")
    except OSError as e:
        blocked(e.strerror)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
caps = {status[k].strip() for k in ("CapPrm", "CapEff", "CapBnd") if k in status}
(blocked if caps == {"0000000000000000"} else breach)("capabilities", caps)
r = subprocess.run(["unshare", "-r", "id", "-u"], capture_output=True, text=True)
(breach if r.returncode == 0 else blocked)("unshare -r:", r.stdout.strip() or r.stderr.strip())
r = subprocess.run(["mount", "-t", "tmpfs", "none", "/tmp"], capture_output=True, text=True)
(breach if r.returncode == 0 else blocked)("mount")
`),
    },
  },
  {
    name: 'files: write outside the work directory',
    // /tmp and /dev/shm are the capped scratch areas besides the work directory (see limits-files).
    shell: () =>
      sh(`
if echo ok > /home/work/.probe && rm /home/work/.probe; then echo "CONTROL the work directory is writable"; else echo "FAILED the work directory is not writable"; fi
for d in / /etc /usr /usr/local/bin /usr/lib /var /var/tmp /root /home /opt /run /conn /dev /proc/sys/kernel /sys/fs/cgroup; do
  f="$d/.polykernel-probe"
  if (echo x > "$f") 2>/dev/null; then breach "wrote $f"; rm -f "$f"; else blocked "$d"; fi
done
if (echo x > /proc/sysrq-trigger) 2>/dev/null; then breach "wrote /proc/sysrq-trigger"; else blocked "/proc/sysrq-trigger"; fi
if mknod /tmp/.null c 1 3 2>/dev/null; then breach "mknod"; rm -f /tmp/.null; else blocked "mknod"; fi
if ln /conn/conn.json /tmp/.link 2>/dev/null; then breach "hard-linked a file of /conn"; rm -f /tmp/.link; else blocked "hard link"; fi
`),
    code: {
      javascript: () =>
        js(`
fs.writeFileSync("/home/work/.probe", "ok");
fs.unlinkSync("/home/work/.probe");
console.log("CONTROL the work directory is writable");
for (const dir of ["/", "/etc", "/usr", "/var", "/var/tmp", "/root", "/home", "/opt", "/run", "/conn", "/dev", "/proc/sys/kernel"]) {
  const path = dir.replace(/\\/$/, "") + "/.polykernel-probe";
  try {
    fs.writeFileSync(path, "x");
    breach("wrote", path);
    fs.unlinkSync(path);
  } catch (e) {
    blocked(dir, e.code);
  }
}
try {
  fs.chmodSync("/conn", 0o777);
  breach("chmod /conn");
} catch (e) {
  blocked("chmod /conn", e.code);
}
const mknod = spawnSync("mknod", ["/tmp/.null", "c", "1", "3"]);
(mknod.status === 0 ? breach : blocked)("mknod");
`),
      python3: () =>
        py(`
import os, stat
open("/home/work/.probe", "w").write("ok"); os.remove("/home/work/.probe"); print("CONTROL the work directory is writable")
for d in ["/", "/etc", "/usr", "/usr/lib/python3", "/var", "/var/tmp", "/root", "/home", "/run", "/conn", "/dev", "/proc/sys/kernel", "/sys/fs/cgroup"]:
    path = os.path.join(d, ".polykernel-probe")
    try:
        open(path, "w").write("x")
        breach("wrote", path)
        os.remove(path)
    except OSError as e:
        blocked(d, e.strerror)
try:
    os.mknod("/tmp/.null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    breach("mknod of a character device")
except OSError as e:
    blocked("mknod", e.strerror)
try:
    os.chmod("/conn", 0o777)
    breach("chmod /conn")
except OSError as e:
    blocked("chmod /conn", e.strerror)
`),
    },
  },
];

export interface Verdict {
  breaches: string[];
  failedControls: string[];
  blocked: number;
  skipped: string[];
  ended: boolean;
}

/** Reads an attack's output. */
export function check(output: string): Verdict {
  const lines = output.split('\n');
  return {
    breaches: lines.filter((l) => l.startsWith('BREACH')),
    failedControls: lines.filter((l) => l.startsWith('FAILED')),
    blocked: lines.filter((l) => l.startsWith('BLOCKED')).length,
    skipped: lines.filter((l) => l.startsWith('SKIP')),
    ended: lines.some((l) => l.trim() === 'END'),
  };
}
