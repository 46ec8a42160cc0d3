/**
 * The seccomp profile of kernels under gVisor (runsc).
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
 * new namespaces (unshare, setns, clone with a CLONE_NEW* flag), mounts, keyrings, bpf, perf.
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
  ],
};

/** Runtimes that are gVisor: `runsc` as scripts/host-setup.sh registers it, or a name that says gvisor. */
export function isGvisorRuntime(runtime: string): boolean {
  return /^runsc\b|gvisor/i.test(runtime);
}
