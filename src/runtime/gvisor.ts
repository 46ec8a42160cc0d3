/**
 * What kernels under gVisor (runsc) need besides runc's flags: a seccomp profile (and a filter for exec'd
 * commands), and a pids limit that counts the sandbox's own processes. Measured with Debian's runsc
 * 2022-12 on the ptrace platform.
 *
 * ## Seccomp
 *
 * Why a profile of our own: gVisor implements user namespaces itself, so without a filter a kernel can
 * `unshare -r` and become root (with every capability) inside a namespace of its own sandbox. runsc applies
 * a container's seccomp profile only with `--oci-seccomp` (scripts/host-setup.sh registers it so), and then
 * Docker's default profile breaks every threaded program: it answers `clone3` with ENOSYS through
 * `errnoRet`, which runsc (2022-12) ignores and turns into EPERM, so glibc's pthread_create fails instead
 * of falling back to `clone` (libzmq aborts: "Operation not permitted (src/thread.cpp)").
 *
 * So this profile allows by default (gVisor's own syscall table is the allow-list: it answers ENOSYS for
 * `clone3` and everything it does not implement) and denies what grants privileges inside the sandbox:
 * new namespaces (unshare, setns, clone with a CLONE_NEW* flag), mounts, keyrings, bpf, perf, and device
 * nodes (gVisor lets an unprivileged user mknod a character device on its tmpfs; FIFOs stay allowed).
 * Docker takes the profile's JSON inline in HostConfig.SecurityOpt (`seccomp=<json>`).
 */

/** CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET. */
const CLONE_NEW_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

const DENIED = [
  'unshare',
  'setns',
  'mount',
  'umount2',
  'pivot_root',
  'chroot',
  'keyctl',
  'add_key',
  'request_key',
  'bpf',
  'perf_event_open',
];

const S_IFMT = 0o170000;
/** Character and block devices. */
const DEVICE_TYPES = [0o020000, 0o060000];
/** The argument holding the file mode: mknod(path, mode, dev), mknodat(dirfd, path, mode, dev). */
const MKNOD_MODE_ARG = { mknod: 1, mknodat: 2 } as const;

export const GVISOR_SECCOMP_PROFILE = {
  defaultAction: 'SCMP_ACT_ALLOW',
  syscalls: [
    { names: DENIED, action: 'SCMP_ACT_ERRNO' },
    // One rule per flag: libseccomp can test "(flags & mask) == value", not "(flags & mask) != 0".
    ...CLONE_NEW_FLAGS.map((flag) => ({
      names: ['clone'],
      action: 'SCMP_ACT_ERRNO',
      args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
    })),
    ...Object.entries(MKNOD_MODE_ARG).flatMap(([name, index]) =>
      DEVICE_TYPES.map((type) => ({
        names: [name],
        action: 'SCMP_ACT_ERRNO',
        args: [{ index, value: S_IFMT, valueTwo: type, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
    ),
  ],
};

/**
 * `runsc exec` (2022-12) starts a process WITHOUT the container's seccomp filter, so commands run beside the
 * kernel (batch mode's steps, file uploads) could still `unshare -r`. They are started through a launcher
 * that installs the same denials as a classic BPF filter, then execs the command. The launcher is Perl:
 * perl-base is Essential in Debian, so every kernel image has it; an image without it fails closed (the
 * command does not run: exit 127). The filter is for x86_64: on another architecture every syscall is
 * denied, so commands fail closed there too until it gets that architecture's numbers.
 */
const SYSCALLS_X86_64: Record<string, number> = {
  unshare: 272,
  setns: 308,
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  chroot: 161,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  bpf: 321,
  perf_event_open: 298,
};
const SYS_CLONE = 56;
const SYS_CLONE3 = 435;
const SYS_MKNOD = 133;
const SYS_MKNODAT = 259;
const AUDIT_ARCH_X86_64 = 0xc000003e;
/** Syscall numbers with this bit are the x32 ABI: denied wholesale. */
const X32_SYSCALL_BIT = 0x40000000;
const CLONE_NEW_MASK = CLONE_NEW_FLAGS.reduce((mask, flag) => mask | flag, 0);

/** The filter: x86_64 only; denied syscalls answer EPERM, clone3 ENOSYS (so glibc falls back to clone). */
function denialFilter(): Buffer {
  const BPF_LD_W_ABS = 0x20;
  const BPF_JEQ_K = 0x15;
  const BPF_JGE_K = 0x35;
  const BPF_AND_K = 0x54;
  const BPF_RET_K = 0x06;
  const RET_ALLOW = 0x7fff0000;
  const RET_ERRNO = 0x00050000;
  type Label = 'allow' | 'eperm' | 'enosys' | 'clone' | 'mknod' | 'mknodat' | 'devicecheck';
  const program: [code: number, jt: number | Label, jf: number | Label, k: number][] = [];
  const op = (code: number, k: number, jt: number | Label = 0, jf: number | Label = 0) => program.push([code, jt, jf, k]);
  const labels: Partial<Record<Label, number>> = {};
  const here = (label: Label) => (labels[label] = program.length);
  // struct seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8i (the low 32 bits first: little-endian).
  const arg = (index: number) => 16 + 8 * index;
  op(BPF_LD_W_ABS, 4);
  op(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 'eperm');
  op(BPF_LD_W_ABS, 0);
  op(BPF_JGE_K, X32_SYSCALL_BIT, 'eperm', 0);
  for (const nr of Object.values(SYSCALLS_X86_64)) op(BPF_JEQ_K, nr, 'eperm', 0);
  op(BPF_JEQ_K, SYS_CLONE3, 'enosys', 0);
  op(BPF_JEQ_K, SYS_CLONE, 'clone', 0);
  op(BPF_JEQ_K, SYS_MKNOD, 'mknod', 0);
  op(BPF_JEQ_K, SYS_MKNODAT, 'mknodat', 'allow');
  here('clone');
  op(BPF_LD_W_ABS, arg(0));
  op(BPF_AND_K, CLONE_NEW_MASK);
  op(BPF_JEQ_K, 0, 'allow', 'eperm');
  here('mknod');
  op(BPF_LD_W_ABS, arg(MKNOD_MODE_ARG.mknod));
  op(BPF_JEQ_K, 0, 'devicecheck', 'devicecheck'); // both ways: a jump
  here('mknodat');
  op(BPF_LD_W_ABS, arg(MKNOD_MODE_ARG.mknodat));
  here('devicecheck');
  op(BPF_AND_K, S_IFMT);
  op(BPF_JEQ_K, DEVICE_TYPES[0]!, 'eperm', 0);
  op(BPF_JEQ_K, DEVICE_TYPES[1]!, 'eperm', 'allow');
  const at = labels as Record<Label, number>;
  at.allow = program.length;
  at.eperm = program.length + 1;
  at.enosys = program.length + 2;
  op(BPF_RET_K, RET_ALLOW);
  op(BPF_RET_K, RET_ERRNO | 1);
  op(BPF_RET_K, RET_ERRNO | 38);
  const out = Buffer.alloc(program.length * 8);
  program.forEach(([code, jt, jf, k], i) => {
    // Jumps are relative to the next instruction.
    const rel = (target: number | Label) => (typeof target === 'number' ? target : at[target] - i - 1);
    out.writeUInt16LE(code, i * 8);
    out.writeUInt8(rel(jt), i * 8 + 2);
    out.writeUInt8(rel(jf), i * 8 + 3);
    out.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return out;
}

// prctl is syscall 157 on x86_64; PR_SET_NO_NEW_PRIVS = 38, PR_SET_SECCOMP = 22, SECCOMP_MODE_FILTER = 2.
// struct sock_fprog { unsigned short len; struct sock_filter *filter; }: 'S x6 P' packs it.
const LAUNCHER = [
  'my $f = pack("H*", shift @ARGV);',
  'syscall(157, 38, 1, 0, 0, 0) == 0 or die "polykernel: prctl(PR_SET_NO_NEW_PRIVS): $!\n";',
  'my $prog = pack("S x6 P", length($f) / 8, $f);',
  'syscall(157, 22, 2, $prog, 0, 0) == 0 or die "polykernel: prctl(PR_SET_SECCOMP): $!\n";',
  'exec { $ARGV[0] } @ARGV or die "polykernel: exec $ARGV[0]: $!\n";',
].join(' ');
const FILTER_HEX = denialFilter().toString('hex');

/** The command to give `docker exec` in a gVisor container so that it runs under the denials above. */
export function underGvisorFilter(cmd: string[]): string[] {
  return ['perl', '-e', LAUNCHER, FILTER_HEX, ...cmd];
}

/**
 * ## Processes
 * On the ptrace platform every process in the sandbox is backed by host processes and threads (9 host
 * tasks each at rest, up to 12 at the peak of a fork bomb, measured), all in the container's pids cgroup
 * besides the sentry's and gofer's own 40-70 threads. A pids limit meant for the kernel's processes would make the sentry itself fail to create them,
 * and it panics: the whole kernel dies. So under gVisor the sandbox enforces the limit itself: RLIMIT_NPROC,
 * which gVisor counts per user inside the sandbox (a fork past it fails with EAGAIN, as under runc's pids
 * limit), while the host cgroup only bounds the sandbox as a whole, with room for that overhead.
 * (Under runc RLIMIT_NPROC would count uid 1000's processes of every kernel on the host: not usable there.)
 * Each runsc kernel can thus hold ~16x more host PIDs than a runc kernel: raise kernel.pid_max on hosts
 * that run many (Debian's default on a 2-CPU machine is 32768).
 */
export function gvisorHostPidsLimit(pidsLimit: number): number {
  return 128 + 16 * pidsLimit;
}

/** Runtimes that are gVisor: `runsc` as scripts/host-setup.sh registers it, or a name that says gvisor. */
export function isGvisorRuntime(runtime: string): boolean {
  return /^runsc\b|gvisor/i.test(runtime);
}
