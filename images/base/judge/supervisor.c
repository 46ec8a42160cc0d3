/*
 * The judge sandbox's supervisor: the main process of a judge container (under Docker's init), talking to
 * the service over its own stdin/stdout in length-prefixed binary frames (src/judge/supervisor-protocol.ts
 * is the other side and documents every frame). It writes source files as the builder, starts each run as
 * the builder or the program user with its limits, measures it, kills every process of that user when the
 * run ends and empties every place that user could write, so that no run sees another's leftovers.
 *
 * It runs as root with only CAP_SETUID and CAP_SETGID, and never touches a path as root:
 * - runs and clean-ups are forked children that drop to the user for good (setgroups/setgid/setuid);
 * - writing files and sending signals switch only the effective ids (setresuid(-1, user, -1)): the real
 *   and saved ids stay 0, so no process of that user may signal or trace the supervisor meanwhile (the
 *   kernel compares the sender's ids with the target's real and saved ids; a process that changed ids
 *   is not dumpable either).
 * No child inherits the supervisor's stdin or stdout (every descriptor is close-on-exec and the run's
 * are closed before exec), so the result frames are written only by the supervisor.
 *
 * The supervisor is a child subreaper: whatever a run forks and orphans is re-parented here, so killing a
 * run kills and reaps all of it, and its CPU time and peak memory are counted (wait4's rusage of every
 * reaped process; /proc's figures of the live ones while the run goes on, which is what the limits are
 * checked against every few milliseconds).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION 1
/* A frame is at most this long (type byte and payload); a longer one ends the supervisor. */
#define MAX_FRAME (1u << 20)
/* The service sends at most this many stdin bytes that the supervisor has not acknowledged yet. */
#define STDIN_WINDOW (256u << 10)
/* Past this much output waiting for the service, the run's pipes are not read (the run waits). */
#define OUT_HIGH_WATER (1u << 20)
#define POLL_INTERVAL_MS 10
#define CLEANUP_TIMEOUT_MS 20000
#define KILL_TIMEOUT_MS 10000

#define WORK_DIR "/home/work"
#define BUILDER_UID 1001
#define PROGRAM_UID 1000

/* Frame types: service to supervisor. */
#define FR_FILE_OPEN 'F'
#define FR_FILE_DATA 'D'
#define FR_FILE_CLOSE 'E'
#define FR_RUN 'R'
#define FR_STDIN 'I'
#define FR_STDIN_CLOSE 'C'
#define FR_SIGNAL 'G'
/* Supervisor to service. */
#define FR_HELLO 'H'
#define FR_OK 'K'
#define FR_ERROR 'X'
#define FR_OUTPUT 'O'
#define FR_STDIN_ACK 'A'
#define FR_RESULT 'T'
#define FR_FATAL 'P'

enum killed_for { K_NONE = 0, K_CPU = 1, K_WALL = 2, K_MEMORY = 3, K_OUTPUT = 4, K_PROCESSES = 5 };

#define RUN_STDERR_TO_STDOUT 1
#define RUN_NPROC_RLIMIT 2

/* ---------------------------------------------------------------------------------------------- */
/* small helpers */

static void die_errno(const char *what);

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

struct buf {
  unsigned char *data;
  size_t start, len, cap;
};

static void buf_reserve(struct buf *b, size_t more) {
  if (b->start > 0 && b->start + b->len + more > b->cap) {
    memmove(b->data, b->data + b->start, b->len);
    b->start = 0;
  }
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (!data) die_errno("realloc");
    b->data = data;
    b->cap = cap;
  }
}
static void buf_append(struct buf *b, const void *data, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->start + b->len, data, n);
  b->len += n;
}
static void buf_consume(struct buf *b, size_t n) {
  b->start += n;
  b->len -= n;
  if (b->len == 0) b->start = 0;
}
static unsigned char *buf_head(struct buf *b) { return b->data + b->start; }

/* Output to the service: everything is queued here and written when stdout is writable. */
static struct buf out;

static void send_frame(char type, const void *a, size_t alen, const void *b, size_t blen) {
  unsigned char header[5];
  put_u32(header, (uint32_t)(1 + alen + blen));
  header[4] = (unsigned char)type;
  buf_append(&out, header, 5);
  if (alen) buf_append(&out, a, alen);
  if (blen) buf_append(&out, b, blen);
}

static void send_text(char type, const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof message) n = sizeof message - 1;
  send_frame(type, message, (size_t)n, NULL, 0);
}

/* Writes what is queued, blocking: only for the last words before exiting. */
static void flush_blocking(void) {
  int flags = fcntl(1, F_GETFL);
  fcntl(1, F_SETFL, flags & ~O_NONBLOCK);
  while (out.len) {
    ssize_t n = write(1, buf_head(&out), out.len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf_consume(&out, (size_t)n);
  }
}

static void die_errno(const char *what) {
  int e = errno;
  fprintf(stderr, "supervisor: %s: %s\n", what, strerror(e));
  send_text(FR_FATAL, "%s: %s", what, strerror(e));
  flush_blocking();
  _exit(70);
}

static void fatal(const char *message) {
  fprintf(stderr, "supervisor: %s\n", message);
  send_text(FR_FATAL, "%s", message);
  flush_blocking();
  _exit(70);
}

/* Effective ids only (see the top): real and saved stay root. */
static void become(uid_t uid) {
  if (setresgid(-1, uid, -1) != 0 || setresuid(-1, uid, -1) != 0) die_errno("setresuid");
}
static void become_root(void) {
  if (setresuid(-1, 0, -1) != 0 || setresgid(-1, 0, -1) != 0) die_errno("setresuid back");
}

/* For good, in a child: supplementary groups, gid, then uid (all three ids). */
static int drop_to(uid_t uid) {
  if (setgroups(0, NULL) != 0) return -1;
  if (setresgid(uid, uid, uid) != 0) return -1;
  if (setresuid(uid, uid, uid) != 0) return -1;
  uid_t r, e, s;
  if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) return -1;
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* SIGCHLD: a byte on a pipe wakes the poll loop */

static int sigchld_pipe[2];

static void on_sigchld(int sig) {
  (void)sig;
  int e = errno;
  char c = 0;
  (void)!write(sigchld_pipe[1], &c, 1);
  errno = e;
}

static void drain_sigchld(void) {
  char scratch[64];
  while (read(sigchld_pipe[0], scratch, sizeof scratch) > 0) {
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* files (writeFiles): as the builder, each name checked, nothing followed */

static int valid_component(const char *s, size_t n) {
  if (n == 0 || n > 255) return 0;
  if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
  if (s[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-' || c == '+'))
      return 0;
  }
  return 1;
}

static int file_fd = -1;
static char file_error[300];

/* Opens `name` (a/b/c) under the work directory, creating its directories, as the builder. */
static void file_open(const unsigned char *p, size_t n) {
  file_error[0] = 0;
  if (file_fd >= 0) {
    close(file_fd);
    file_fd = -1;
  }
  if (n < 1) {
    snprintf(file_error, sizeof file_error, "malformed file frame");
    return;
  }
  int executable = p[0] & 1;
  char name[4097];
  size_t len = n - 1;
  if (len == 0 || len > 4096) {
    snprintf(file_error, sizeof file_error, "a file name must have 1 to 4096 characters");
    return;
  }
  memcpy(name, p + 1, len);
  name[len] = 0;
  if (strlen(name) != len) {
    snprintf(file_error, sizeof file_error, "a file name must not contain NUL");
    return;
  }
  become(BUILDER_UID);
  int dir = open(WORK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) {
    snprintf(file_error, sizeof file_error, "work directory: %s", strerror(errno));
    become_root();
    return;
  }
  char *component = name;
  for (;;) {
    char *slash = strchr(component, '/');
    size_t clen = slash ? (size_t)(slash - component) : strlen(component);
    if (!valid_component(component, clen)) {
      snprintf(file_error, sizeof file_error, "file name %.200s: each part must be 1-255 of A-Z a-z 0-9 . _ - +, not . or .., not starting with -", name);
      break;
    }
    if (!slash) {
      int fd = openat(dir, component, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, executable ? 0755 : 0644);
      if (fd < 0) snprintf(file_error, sizeof file_error, "file %.200s: %s", name, strerror(errno));
      else file_fd = fd;
      break;
    }
    *slash = 0;
    if (mkdirat(dir, component, 0755) != 0 && errno != EEXIST) {
      snprintf(file_error, sizeof file_error, "directory %.200s: %s", component, strerror(errno));
      break;
    }
    int sub = openat(dir, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      snprintf(file_error, sizeof file_error, "directory %.200s: %s", component, strerror(errno));
      break;
    }
    close(dir);
    dir = sub;
    component = slash + 1;
  }
  close(dir);
  become_root();
}

static void file_data(const unsigned char *p, size_t n) {
  if (file_fd < 0) {
    if (!file_error[0]) snprintf(file_error, sizeof file_error, "file data without an open file");
    return;
  }
  while (n > 0) {
    ssize_t w = write(file_fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      snprintf(file_error, sizeof file_error, "writing a file: %s", w < 0 ? strerror(errno) : "short write");
      close(file_fd);
      file_fd = -1;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void file_close(void) {
  if (file_fd >= 0 && close(file_fd) != 0 && !file_error[0]) snprintf(file_error, sizeof file_error, "closing a file: %s", strerror(errno));
  file_fd = -1;
  if (file_error[0]) send_text(FR_ERROR, "%s", file_error);
  else send_frame(FR_OK, NULL, 0, NULL, 0);
  file_error[0] = 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* cgroup counters of the container (absent under some runtimes: then 0 and unused) */

static long long read_counter(const char *path, const char *key) {
  char text[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = 0;
  size_t klen = strlen(key);
  for (char *line = text; line && *line; ) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ' ') return atoll(line + klen + 1);
    line = strchr(line, '\n');
    if (line) line++;
  }
  return -1;
}

static long long oom_kills(void) {
  long long v = read_counter("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill");
  if (v < 0) v = read_counter("/sys/fs/cgroup/memory.events", "oom_kill");
  return v;
}

static long long pids_refused(void) {
  long long v = read_counter("/sys/fs/cgroup/pids/pids.events", "max");
  if (v < 0) v = read_counter("/sys/fs/cgroup/pids.events", "max");
  return v;
}

/*
 * CPU time of every process the container ever ran, in ns (-1 without a cgroup file: gVisor). A child the
 * kernel reaps by itself (its parent ignores SIGCHLD or set SA_NOCLDWAIT) reaches neither wait4 nor its
 * parent's cutime, and one that lives shorter than a poll is never seen in /proc: only the cgroup counts it.
 */
static long long cgroup_cpu_ns(void) {
  static const char *const v1[] = {"/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"};
  for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++) {
    char text[64];
    int fd = open(v1[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) continue;
    text[n] = 0;
    return atoll(text);
  }
  long long usec = read_counter("/sys/fs/cgroup/cpu.stat", "usage_usec");
  return usec < 0 ? -1 : usec * 1000;
}

/* The supervisor's own CPU time in ns (its polls and file writes are in the cgroup's figure too). */
static long long self_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * KB in use in the sandbox's tmpfs mounts (the work directory, /tmp, /dev/shm): their files live in memory,
 * so what a run keeps there is memory it uses beside its resident set (else a program could keep its data
 * in files, out of its memory limit). Fixed mount points under a read-only root: nothing to follow.
 */
static int64_t files_kb(void) {
  static const char *const mounts[] = {WORK_DIR, "/tmp", "/dev/shm"};
  dev_t seen[3];
  int count = 0;
  int64_t total = 0;
  for (int i = 0; i < 3; i++) {
    struct stat st;
    struct statfs fs;
    if (stat(mounts[i], &st) != 0 || statfs(mounts[i], &fs) != 0) continue;
    int again = 0;
    for (int j = 0; j < count; j++) again |= seen[j] == st.st_dev;
    if (again) continue;
    seen[count++] = st.st_dev;
    total += (int64_t)(fs.f_blocks - fs.f_bfree) * (int64_t)fs.f_bsize / 1024;
  }
  return total;
}

/* ---------------------------------------------------------------------------------------------- */
/* the processes of a user, from /proc */

static long clock_ticks;
static long page_kb;
static pid_t self_pid;

struct usage {
  int64_t cpu_ms;
  int64_t rss_kb;
  int threads;
  int processes;
};

/* Real uid of a process from its status file (for the ones /proc shows as root: not dumpable). */
static int status_uid(int procfd, const char *pid) {
  char path[300], text[2048];
  snprintf(path, sizeof path, "%s/status", pid);
  int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = 0;
  char *uid = strstr(text, "\nUid:");
  return uid ? atoi(uid + 5) : -1;
}

static struct usage live_usage(uid_t uid) {
  struct usage u = {0, 0, 0, 0};
  int procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0) return u;
  DIR *d = fdopendir(dup(procfd));
  if (!d) {
    close(procfd);
    return u;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    pid_t pid = atoi(e->d_name);
    if (pid == 1 || pid == self_pid) continue;
    struct stat st;
    if (fstatat(procfd, e->d_name, &st, 0) != 0) continue;
    if (st.st_uid != uid && !(st.st_uid == 0 && status_uid(procfd, e->d_name) == (int)uid)) continue;
    char path[300], text[1024];
    snprintf(path, sizeof path, "%s/stat", e->d_name);
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) continue;
    text[n] = 0;
    char *p = strrchr(text, ')');
    if (!p) continue;
    /* Fields after the command: 3 state ... 14 utime 15 stime 16 cutime 17 cstime ... 20 threads ... 24 rss. */
    unsigned long long field[25] = {0};
    int index = 3;
    p += 2;
    while (*p && index <= 24) {
      if (index != 3) field[index] = strtoull(p, NULL, 10);
      while (*p && *p != ' ') p++;
      while (*p == ' ') p++;
      index++;
    }
    u.cpu_ms += (int64_t)((field[14] + field[15] + field[16] + field[17]) * 1000 / (unsigned long long)clock_ticks);
    u.rss_kb += (int64_t)field[24] * page_kb;
    u.threads += (int)field[20];
    u.processes++;
  }
  closedir(d);
  close(procfd);
  return u;
}

/* ---------------------------------------------------------------------------------------------- */
/* the run */

struct run {
  int active;
  uid_t uid;
  pid_t pid;
  int flags;
  uint32_t cpu_ms, extra_cpu_ms, wall_ms, memory_kb, stack_kb, max_processes, max_output, max_file_kb;
  int in_fd, out_fd, err_fd, exec_fd;
  struct buf stdin_queue;
  int stdin_closing; /* the service said there is no more stdin */
  uint64_t ack_pending;
  uint64_t output_bytes;
  int64_t started_ms, ended_ms;
  int exited; /* the main process was reaped */
  int status;
  int killed_for;
  int64_t reaped_cpu_ms; /* every reaped process of the run */
  int64_t peak_kb;
  /* The most CPU a poll saw (the live processes' and the reaped ones'): a floor for the result where
     orphans are reaped by init instead of here (no subreaper), so their time never reaches wait4. */
  int64_t polled_cpu_ms;
  long long oom_base, pids_base;
  /* The container's CPU and the supervisor's own at the start: what the container used since, less the
     supervisor's share, is the run's (init idles), every process counted, however it was reaped. */
  long long cgroup_cpu_base, self_cpu_base;
  /* KB in the tmpfs mounts at the start (the builder's files): what the run adds counts as its memory. */
  int64_t files_base_kb;
  int exec_errno;
  int nproc_rlimit;
};

static struct run run;
/* gVisor: the service says so in every run frame (the flag that asks for RLIMIT_NPROC). */
static int under_gvisor;
/* Once a clean-up or a kill failed, no further run is started: leftovers could leak into it. */
static int unusable;

/* What the run keeps in files in the tmpfs mounts, in KB. */
static int64_t run_files_kb(void) {
  int64_t kb = files_kb() - run.files_base_kb;
  return kb < 0 ? 0 : kb;
}

/* The run's CPU by the container's cgroup, in ms (-1 where there is none). */
static int64_t cgroup_run_cpu_ms(void) {
  if (run.cgroup_cpu_base < 0) return -1;
  long long now = cgroup_cpu_ns();
  if (now < 0) return -1;
  long long ns = (now - run.cgroup_cpu_base) - (self_cpu_ns() - run.self_cpu_base);
  return ns < 0 ? 0 : ns / 1000000;
}

static void account(const struct rusage *ru) {
  run.reaped_cpu_ms += (int64_t)ru->ru_utime.tv_sec * 1000 + ru->ru_utime.tv_usec / 1000 + (int64_t)ru->ru_stime.tv_sec * 1000 +
                       ru->ru_stime.tv_usec / 1000;
  if (ru->ru_maxrss > run.peak_kb) run.peak_kb = ru->ru_maxrss;
}

/* Reaps every child that has ended; the main process's status is kept. */
static void reap(void) {
  for (;;) {
    int status;
    struct rusage ru;
    pid_t pid = wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return;
    if (!run.active) continue;
    account(&ru);
    if (pid == run.pid) {
      run.exited = 1;
      run.status = status;
      run.ended_ms = now_ms();
    }
  }
}

/*
 * Kills every process of `uid` and reaps them, until none is left (a fork racing the kill is caught by the
 * next round). Returns -1 when some survive the timeout.
 */
static int kill_all(uid_t uid) {
  int64_t deadline = now_ms() + KILL_TIMEOUT_MS;
  int result = -1;
  become(uid);
  for (;;) {
    int r = kill(-1, SIGKILL);
    int e = errno;
    become_root();
    reap();
    if (r < 0 && e == ESRCH) {
      result = 0;
      break;
    }
    if (now_ms() > deadline) break;
    struct timespec pause = {0, 200000};
    nanosleep(&pause, NULL);
    become(uid);
  }
  return result;
}

static void set_limit(int resource, rlim_t value) {
  struct rlimit rl = {value, value};
  setrlimit(resource, &rl);
}

static void run_child(char **argv, char **envp, int in, int outw, int errw, int execw) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  setsid();
  /* The OOM killer picks the run, never the supervisor. Written while still root (a process that has
     changed its ids may not write its own /proc files); a kernel file, not a path the run can write. */
  int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) {
    (void)!write(oom, "1000", 4);
    close(oom);
  }
  rlim_t cpu_s = ((rlim_t)run.cpu_ms + run.extra_cpu_ms + 999) / 1000;
  if (cpu_s < 1) cpu_s = 1;
  struct rlimit cpu = {cpu_s, cpu_s + 1};
  setrlimit(RLIMIT_CPU, &cpu);
  set_limit(RLIMIT_FSIZE, (rlim_t)run.max_file_kb * 1024);
  set_limit(RLIMIT_STACK, run.stack_kb ? (rlim_t)run.stack_kb * 1024 : RLIM_INFINITY);
  set_limit(RLIMIT_CORE, 0);
  set_limit(RLIMIT_NOFILE, 4096);
  /* Under gVisor the sandbox counts a user's processes itself (see src/runtime/gvisor.ts). */
  /* One more than the run's limit, so that a fork bomb is seen past it (and killed for processes), as the
     pids cgroup's slack allows under runc. */
  if (run.nproc_rlimit) set_limit(RLIMIT_NPROC, (rlim_t)run.max_processes + 1);
  if (dup2(in, 0) < 0 || dup2(outw, 1) < 0 || dup2(errw, 2) < 0) _exit(126);
  if (drop_to(run.uid) != 0) {
    int e = errno ? errno : EPERM;
    (void)!write(execw, &e, sizeof e);
    _exit(126);
  }
  if (chdir(WORK_DIR) != 0) _exit(126);
  umask(022);
  /* Nothing else is inherited: every descriptor but the three and the exec-error pipe (close-on-exec). */
  for (int fd = 3; fd < 1024; fd++)
    if (fd != execw) close(fd);
  execvpe(argv[0], argv, envp);
  int e = errno;
  (void)!write(execw, &e, sizeof e);
  _exit(127);
}

extern char **environ;

/* The run's environment: the image's, then the request's pairs (replacing a name the image sets). */
static char **build_env(char **extra, int count) {
  int base = 0;
  while (environ[base]) base++;
  char **env = calloc((size_t)base + (size_t)count + 1, sizeof *env);
  if (!env) die_errno("calloc");
  int n = 0;
  for (int i = 0; i < base; i++) {
    size_t klen = strcspn(environ[i], "=");
    int replaced = 0;
    for (int j = 0; j < count; j++)
      if (strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=') replaced = 1;
    if (!replaced) env[n++] = environ[i];
  }
  for (int j = 0; j < count; j++) env[n++] = extra[j];
  env[n] = NULL;
  return env;
}

static void nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* RUN: u8 as, u8 flags, 8 x u32 limits, u16 argc, u16 envc, then argc+envc strings (u32 length, bytes). */
static void start_run(const unsigned char *p, size_t n) {
  if (run.active) {
    send_text(FR_ERROR, "a run is already under way");
    return;
  }
  if (unusable) {
    send_text(FR_ERROR, "the sandbox is unusable: an earlier run could not be cleaned up");
    return;
  }
  if (n < 2 + 32 + 4) {
    send_text(FR_ERROR, "malformed run frame");
    return;
  }
  struct run r;
  memset(&r, 0, sizeof r);
  r.in_fd = r.out_fd = r.err_fd = r.exec_fd = -1;
  r.uid = p[0] == 0 ? BUILDER_UID : PROGRAM_UID;
  r.flags = p[1];
  uint32_t *limits[] = {&r.cpu_ms, &r.extra_cpu_ms, &r.wall_ms, &r.memory_kb, &r.stack_kb, &r.max_processes, &r.max_output, &r.max_file_kb};
  for (int i = 0; i < 8; i++) *limits[i] = get_u32(p + 2 + 4 * i);
  int argc = get_u16(p + 34), envc = get_u16(p + 36);
  if (argc < 1 || argc > 4096 || envc > 4096) {
    send_text(FR_ERROR, "a run needs 1 to 4096 arguments and at most 4096 environment entries");
    return;
  }
  char **strings = calloc((size_t)argc + (size_t)envc + 1, sizeof *strings);
  if (!strings) die_errno("calloc");
  size_t at = 38;
  for (int i = 0; i < argc + envc; i++) {
    if (at + 4 > n || get_u32(p + at) > n - at - 4) {
      send_text(FR_ERROR, "malformed run frame (strings)");
      goto fail;
    }
    size_t len = get_u32(p + at);
    strings[i] = malloc(len + 1);
    if (!strings[i]) die_errno("malloc");
    memcpy(strings[i], p + at + 4, len);
    strings[i][len] = 0;
    if (strlen(strings[i]) != len) {
      send_text(FR_ERROR, "an argument or environment entry contains NUL");
      goto fail;
    }
    if (i >= argc && !strchr(strings[i], '=')) {
      send_text(FR_ERROR, "an environment entry must be NAME=value");
      goto fail;
    }
    at += 4 + len;
  }
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  if (!argv) die_errno("calloc");
  for (int i = 0; i < argc; i++) argv[i] = strings[i];
  char **envp = build_env(strings + argc, envc);

  int in[2], outp[2], errp[2], execp[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(outp, O_CLOEXEC) || pipe2(execp, O_CLOEXEC)) die_errno("pipe");
  if (r.flags & RUN_STDERR_TO_STDOUT) {
    errp[0] = -1;
    errp[1] = outp[1];
  } else if (pipe2(errp, O_CLOEXEC)) die_errno("pipe");

  drain_sigchld();
  r.oom_base = oom_kills();
  r.pids_base = pids_refused();
  r.cgroup_cpu_base = cgroup_cpu_ns();
  r.self_cpu_base = self_cpu_ns();
  r.files_base_kb = files_kb();
  r.nproc_rlimit = (r.flags & RUN_NPROC_RLIMIT) != 0;
  under_gvisor = r.nproc_rlimit;
  r.active = 1;
  run = r;
  run.started_ms = now_ms();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    run.active = 0;
    send_text(FR_ERROR, "cannot start the run: %s", strerror(e));
    close(in[0]); close(in[1]); close(outp[0]); close(outp[1]); close(execp[0]); close(execp[1]);
    if (errp[0] >= 0) { close(errp[0]); close(errp[1]); }
    free(argv);
    free(envp);
    goto fail;
  }
  if (pid == 0) run_child(argv, envp, in[0], outp[1], errp[1], execp[1]);
  run.pid = pid;
  close(in[0]);
  close(outp[1]);
  if (errp[0] >= 0) close(errp[1]);
  close(execp[1]);
  run.in_fd = in[1];
  run.out_fd = outp[0];
  run.err_fd = errp[0];
  run.exec_fd = execp[0];
  nonblocking(run.in_fd);
  nonblocking(run.out_fd);
  if (run.err_fd >= 0) nonblocking(run.err_fd);
  nonblocking(run.exec_fd);
  free(argv);
  free(envp);
fail:
  for (int i = 0; i < argc + envc; i++) free(strings[i]);
  free(strings);
}

static void kill_for(int reason) {
  if (!run.killed_for) run.killed_for = reason;
  if (kill_all(run.uid) != 0 || !run.exited) {
    /* Something of the run survived SIGKILL: report it killed, start no further run. */
    unusable = 1;
    run.exited = 1;
    run.status = SIGKILL;
    run.ended_ms = now_ms();
  }
}

static void close_stdin(void) {
  if (run.in_fd >= 0) close(run.in_fd);
  run.in_fd = -1;
  run.ack_pending += run.stdin_queue.len;
  buf_consume(&run.stdin_queue, run.stdin_queue.len);
}

static void write_stdin(void) {
  while (run.in_fd >= 0 && run.stdin_queue.len) {
    ssize_t n = write(run.in_fd, buf_head(&run.stdin_queue), run.stdin_queue.len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      /* EPIPE: the program closed its stdin (or ended); what is left is dropped. */
      close_stdin();
      return;
    }
    buf_consume(&run.stdin_queue, (size_t)n);
    run.ack_pending += (uint64_t)n;
  }
  if (run.in_fd >= 0 && run.stdin_closing && run.stdin_queue.len == 0) close_stdin();
}

/* Reads one pipe; returns 0 at EOF. Output past the cap kills the run; what came before is sent. */
static int read_output(int *fd, int stream) {
  unsigned char chunk[65536];
  ssize_t n = read(*fd, chunk, sizeof chunk);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  if (n <= 0) {
    close(*fd);
    *fd = -1;
    return 0;
  }
  uint64_t room = run.output_bytes < run.max_output ? run.max_output - run.output_bytes : 0;
  size_t keep = (uint64_t)n > room ? (size_t)room : (size_t)n;
  if (keep) {
    unsigned char s = (unsigned char)stream;
    send_frame(FR_OUTPUT, &s, 1, chunk, keep);
    run.output_bytes += keep;
  }
  if ((size_t)n > keep && run.active && !run.exited) kill_for(K_OUTPUT);
  return 1;
}

static void check_limits(void) {
  if (!run.active || run.exited || run.killed_for) return;
  int64_t wall = now_ms() - run.started_ms;
  struct usage u = live_usage(run.uid);
  int64_t memory = u.rss_kb + run_files_kb();
  if (memory > run.peak_kb) run.peak_kb = memory;
  int64_t cpu = run.reaped_cpu_ms + u.cpu_ms;
  int64_t by_cgroup = cgroup_run_cpu_ms();
  if (by_cgroup > cpu) cpu = by_cgroup;
  if (cpu > run.polled_cpu_ms) run.polled_cpu_ms = cpu;
  /* Processes first: a fork bomb also burns CPU, and its cause is the processes. */
  if (u.threads > (int)run.max_processes) kill_for(K_PROCESSES);
  else if (cpu > (int64_t)run.cpu_ms + run.extra_cpu_ms) kill_for(K_CPU);
  else if (wall > run.wall_ms) kill_for(K_WALL);
  else if (memory > run.memory_kb) kill_for(K_MEMORY);
  else {
    long long oom = oom_kills();
    long long refused = pids_refused();
    if (oom > run.oom_base && run.oom_base >= 0) kill_for(K_MEMORY);
    else if (refused > run.pids_base && run.pids_base >= 0) kill_for(K_PROCESSES);
  }
}

/* Empties every place `uid` could write, in a child running as `uid`. Returns -1 when it failed. */
static int cleanup(uid_t uid);

static void finish_run(void) {
  /* The main process ended: whatever it left running is killed (and every fork racing that). */
  if (kill_all(run.uid) != 0) unusable = 1;
  if (run.in_fd >= 0) close_stdin();
  /* Every writer is dead: the pipes give what is left, then EOF. */
  int64_t deadline = now_ms() + 2000;
  while ((run.out_fd >= 0 || run.err_fd >= 0) && now_ms() < deadline) {
    struct pollfd fds[2] = {{run.out_fd, POLLIN, 0}, {run.err_fd, POLLIN, 0}};
    if (poll(fds, 2, 100) < 0 && errno != EINTR) break;
    if (run.out_fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) read_output(&run.out_fd, 1);
    if (run.err_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) read_output(&run.err_fd, 2);
  }
  if (run.out_fd >= 0) close(run.out_fd);
  if (run.err_fd >= 0) close(run.err_fd);
  int exec_errno = 0;
  if (read(run.exec_fd, &exec_errno, sizeof exec_errno) == (ssize_t)sizeof exec_errno && exec_errno) {
    char message[300];
    int len = snprintf(message, sizeof message, "cannot run %s\n", strerror(exec_errno));
    unsigned char s = 2;
    send_frame(FR_OUTPUT, &s, 1, message, (size_t)len);
  }
  close(run.exec_fd);
  if (!run.killed_for) {
    long long oom = oom_kills();
    if (oom > run.oom_base && run.oom_base >= 0) run.killed_for = K_MEMORY;
  }
  if (!run.killed_for && WIFSIGNALED(run.status) && WTERMSIG(run.status) == SIGXCPU) run.killed_for = K_CPU;
  /* Its files are still there (the clean-up comes below): at least that much memory at the end. */
  int64_t files = run_files_kb();
  if (files > run.peak_kb) run.peak_kb = files;
  /* Every process of the run is dead and reaped: the cgroup's figure is complete. */
  int64_t by_cgroup = cgroup_run_cpu_ms();
  if (by_cgroup > run.polled_cpu_ms) run.polled_cpu_ms = by_cgroup;

  unsigned char result[4 * 5 + 2];
  int exit_code = WIFEXITED(run.status) ? WEXITSTATUS(run.status) : -1;
  int signo = WIFSIGNALED(run.status) ? WTERMSIG(run.status) : 0;
  put_u32(result, (uint32_t)(run.reaped_cpu_ms > run.polled_cpu_ms ? run.reaped_cpu_ms : run.polled_cpu_ms));
  put_u32(result + 4, (uint32_t)(run.ended_ms - run.started_ms));
  put_u32(result + 8, (uint32_t)run.peak_kb);
  put_u32(result + 12, (uint32_t)exit_code);
  put_u32(result + 16, (uint32_t)signo);
  result[20] = (unsigned char)run.killed_for;
  result[21] = (unsigned char)(exec_errno ? 1 : 0) | (unsigned char)(unusable ? 2 : 0);
  if (run.ack_pending) {
    unsigned char ack[4];
    put_u32(ack, (uint32_t)run.ack_pending);
    send_frame(FR_STDIN_ACK, ack, 4, NULL, 0);
  }
  free(run.stdin_queue.data);
  uid_t uid = run.uid;
  memset(&run, 0, sizeof run);
  run.in_fd = run.out_fd = run.err_fd = run.exec_fd = -1;
  /* The clean-up comes before the result: once the service has the result it may start the next run. */
  if (cleanup(uid) != 0) {
    unusable = 1;
    result[21] |= 2;
  }
  send_frame(FR_RESULT, result, sizeof result, NULL, 0);
}

/* ---------------------------------------------------------------------------------------------- */
/* clean-up, as the user, in a child */

static int deep_counter;

/*
 * Removes entry `name` of directory `dirfd` when it belongs to `uid` (recursively), or descends into a
 * world-writable directory of someone else to remove what belongs to `uid` there. Deeper than a bound, a
 * directory is moved up to `topfd` instead and removed from there on a later pass (no depth limit).
 */
static int remove_entry_(int dirfd, const char *name, uid_t uid, int topfd, int depth);

static int remove_entry(int dirfd, const char *name, uid_t uid, int topfd, int depth) {
  int r = remove_entry_(dirfd, name, uid, topfd, depth);
  if (r < 0) fprintf(stderr, "supervisor: clean-up of %s (depth %d): %s\n", name, depth, strerror(errno));
  return r;
}

static int remove_entry_(int dirfd, const char *name, uid_t uid, int topfd, int depth) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
  int owned = st.st_uid == uid;
  if (!S_ISDIR(st.st_mode)) {
    if (!owned) return 0;
    return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
  }
  if (!owned && !(st.st_mode & S_IWOTH)) return 0;
  if (owned && depth > 64) {
    /* A fresh name at the top (a name the program chose may be taken: try the next). */
    for (int attempt = 0; attempt < 1000; attempt++) {
      char moved[64];
      snprintf(moved, sizeof moved, ".judge-deep-%d", ++deep_counter);
      if (renameat(dirfd, name, topfd, moved) == 0) return 1; /* the top is scanned again */
      if (errno != EEXIST && errno != ENOTEMPTY) return -1;
    }
    return -1;
  }
  if (owned && (st.st_mode & 0700) != 0700) fchmodat(dirfd, name, 0700, 0);
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return owned ? -1 : 0;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int result = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    int r = remove_entry(fd, e->d_name, uid, topfd, depth + 1);
    if (r < 0) result = -1;
    else if (r > 0 && result == 0) result = 1;
  }
  closedir(d);
  if (owned && result == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) result = -1;
  return result;
}

/* Removes what `uid` owns inside directory `path` (the directory itself stays). */
static int empty_dir(const char *path, uid_t uid) {
  int top = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (top < 0) return errno == ENOENT ? 0 : -1;
  int result = 0;
  for (int pass = 0; pass < 100000; pass++) {
    /* A duplicate shares the directory's offset: back to its start for every pass. */
    int fd = dup(top);
    if (fd >= 0) lseek(fd, 0, SEEK_SET);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
      result = -1;
      break;
    }
    int again = 0;
    result = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      int r = remove_entry(top, e->d_name, uid, top, 1);
      if (r < 0) result = -1;
      if (r > 0) again = 1;
    }
    closedir(d);
    if (!again) break;
  }
  close(top);
  return result;
}

/*
 * SysV IPC objects the user created (the container has an IPC namespace of its own, shared by runs), found
 * by index (*_STAT_ANY needs no read permission: an object of mode 0 is found too; plain *_STAT where the
 * kernel lacks it). No /proc/sysvipc: gVisor has none.
 */
#ifndef SHM_STAT_ANY
#define SHM_STAT_ANY 15
#endif
#ifndef SEM_STAT_ANY
#define SEM_STAT_ANY 20
#endif
#ifndef MSG_STAT_ANY
#define MSG_STAT_ANY 13
#endif
union semun_ {
  int val;
  struct semid_ds *buf;
  unsigned short *array;
  struct seminfo *info;
};

static void remove_ipc(uid_t uid) {
  struct shm_info shm_info;
  memset(&shm_info, 0, sizeof shm_info);
  int max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&shm_info);
  /* gVisor (2022) has neither *_STAT nor a working IPC_RMID here: the service denies SysV IPC to the
     sandbox there instead (src/runtime/docker.ts). */
  if (under_gvisor) return;
  for (int i = 0; i <= max && i < 65536; i++) {
    struct shmid_ds ds;
    int id = shmctl(i, SHM_STAT_ANY, &ds);
    if (id < 0) id = shmctl(i, SHM_STAT, &ds);
    if (id >= 0 && ds.shm_perm.uid == uid) shmctl(id, IPC_RMID, NULL);
  }
  struct seminfo sem_info;
  union semun_ arg;
  arg.info = &sem_info;
  max = semctl(0, 0, SEM_INFO, arg);
  for (int i = 0; i <= max && i < 65536; i++) {
    struct semid_ds ds;
    arg.buf = &ds;
    int id = semctl(i, 0, SEM_STAT_ANY, arg);
    if (id < 0) id = semctl(i, 0, SEM_STAT, arg);
    if (id >= 0 && ds.sem_perm.uid == uid) semctl(id, 0, IPC_RMID);
  }
  struct msginfo msg_info;
  max = msgctl(0, MSG_INFO, (struct msqid_ds *)(void *)&msg_info);
  for (int i = 0; i <= max && i < 65536; i++) {
    struct msqid_ds ds;
    int id = msgctl(i, MSG_STAT_ANY, &ds);
    if (id < 0) id = msgctl(i, MSG_STAT, &ds);
    if (id >= 0 && ds.msg_perm.uid == uid) msgctl(id, IPC_RMID, NULL);
  }
}

/*
 * After a compile step: nothing of the builder's in the work directory stays writable by anyone else, and
 * the directory itself is sticky again. Code the contestant's files run at compile time (an annotation
 * processor javac finds on its class path, a compiler plugin) could otherwise leave a file or a directory
 * the program may write, which no clean-up of the program's own files empties: a channel from one test to
 * the next. Taking the group and other write bits also takes them from any ACL (they bound its mask).
 */
#define SEAL_MAX_DEPTH 256
static int seal_dir(int dirfd, int depth) {
  int fd = dup(dirfd);
  if (fd < 0) return -1;
  lseek(fd, 0, SEEK_SET);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int result = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != BUILDER_UID || S_ISLNK(st.st_mode)) continue;
    mode_t mode = st.st_mode & 07777 & ~(mode_t)(S_IWGRP | S_IWOTH);
    if (S_ISDIR(st.st_mode)) mode |= S_IRWXU;
    if (mode != (st.st_mode & 07777) && fchmodat(dirfd, e->d_name, mode, 0) != 0) result = -1;
    if (!S_ISDIR(st.st_mode)) continue;
    if (depth >= SEAL_MAX_DEPTH) {
      fprintf(stderr, "supervisor: the builder's tree is deeper than %d directories\n", SEAL_MAX_DEPTH);
      result = -1;
      continue;
    }
    int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0 || seal_dir(sub, depth + 1) != 0) result = -1;
    if (sub >= 0) close(sub);
  }
  closedir(d);
  return result;
}

static int seal_builder_files(void) {
  int top = open(WORK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (top < 0) return -1;
  int result = fchmod(top, 01777) == 0 ? seal_dir(top, 1) : -1;
  close(top);
  return result;
}

static int cleanup(uid_t uid) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    signal(SIGCHLD, SIG_DFL);
    if (drop_to(uid) != 0) _exit(2);
    int result = 0;
    if (uid == PROGRAM_UID && empty_dir(WORK_DIR, uid) != 0) result = 1;
    if (uid == BUILDER_UID && seal_builder_files() != 0) result = 1;
    if (empty_dir("/tmp", uid) != 0) result = 1;
    if (empty_dir("/dev/shm", uid) != 0) result = 1;
    if (empty_dir("/dev/mqueue", uid) != 0) result = 1;
    remove_ipc(uid);
    _exit(result);
  }
  int64_t deadline = now_ms() + CLEANUP_TIMEOUT_MS;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
    if (r < 0 && errno != EINTR) return -1;
    if (now_ms() > deadline) {
      kill_all(uid);
      waitpid(pid, &status, 0);
      return -1;
    }
    struct timespec pause = {0, 200000};
    nanosleep(&pause, NULL);
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* frames from the service */

static void send_signal(const unsigned char *p, size_t n) {
  if (n != 1 || !run.active || run.exited) return;
  int signo = p[0];
  if (signo < 1 || signo > 64) return;
  /* The whole process group the run started (a run that left it is killed at its end anyway). */
  become(run.uid);
  kill(-run.pid, signo);
  become_root();
}

static void handle_frame(unsigned char type, const unsigned char *p, size_t n) {
  switch (type) {
    case FR_FILE_OPEN: file_open(p, n); break;
    case FR_FILE_DATA: file_data(p, n); break;
    case FR_FILE_CLOSE: file_close(); break;
    case FR_RUN: start_run(p, n); break;
    case FR_STDIN:
      /* Stdin of a run that has ended is dropped (frames the service sent before it saw the result). */
      if (!run.active || run.exited) break;
      /* The program closed its stdin: dropped, but acknowledged, so that the service's window moves on. */
      if (run.in_fd < 0) {
        run.ack_pending += n;
        break;
      }
      if (run.stdin_queue.len + n > 2 * STDIN_WINDOW) fatal("the service sent more stdin than the window allows");
      buf_append(&run.stdin_queue, p, n);
      write_stdin();
      break;
    case FR_STDIN_CLOSE:
      if (!run.active) break;
      run.stdin_closing = 1;
      write_stdin();
      break;
    case FR_SIGNAL: send_signal(p, n); break;
    default: fatal("unknown frame type");
  }
}

static struct buf in;

/* Takes every complete frame out of `in`. */
static void parse_frames(void) {
  while (in.len >= 4) {
    uint32_t length = get_u32(buf_head(&in));
    if (length < 1 || length > MAX_FRAME) fatal("frame length out of bounds");
    if (in.len < 4 + (size_t)length) return;
    unsigned char *frame = buf_head(&in) + 4;
    handle_frame(frame[0], frame + 1, length - 1);
    buf_consume(&in, 4 + (size_t)length);
  }
}

int main(void) {
  self_pid = getpid();
  clock_ticks = sysconf(_SC_CLK_TCK);
  page_kb = sysconf(_SC_PAGESIZE) / 1024;
  if (geteuid() != 0) fatal("the supervisor must start as root (with only CAP_SETUID and CAP_SETGID)");
  if (setgroups(0, NULL) != 0) die_errno("setgroups");
  /* Orphans of a run are re-parented here, so that they are killed, reaped and counted. */
  /* gVisor (2022) has no subreapers: orphans then go to init, which reaps them; they are still killed
     (kill(-1)), and their CPU time counts as the polls saw it (see finish_run). */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 && errno != EINVAL) die_errno("PR_SET_CHILD_SUBREAPER");
  signal(SIGPIPE, SIG_IGN);
  if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) != 0) die_errno("pipe");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  fcntl(2, F_SETFD, FD_CLOEXEC);
  nonblocking(1);
  nonblocking(0);
  memset(&run, 0, sizeof run);
  run.in_fd = run.out_fd = run.err_fd = run.exec_fd = -1;

  /* The work directory's tmpfs is the builder's; Docker gives it the image directory's mode (copy-up), so
     the builder makes it sticky and world-writable here, before anything runs: the program may add files
     of its own there, never change or remove the builder's. */
  become(BUILDER_UID);
  int work = open(WORK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (work < 0 || fchmod(work, 01777) != 0) die_errno("making the work directory sticky");
  close(work);
  become_root();

  unsigned char hello[4];
  put_u32(hello, PROTOCOL_VERSION);
  send_frame(FR_HELLO, hello, 4, NULL, 0);

  int input_open = 1;
  int64_t next_check = 0;
  for (;;) {
    struct pollfd fds[7];
    int nfds = 0;
    int i_in = -1, i_out = -1, i_chld, i_pin = -1, i_pout = -1, i_perr = -1;
    /* Frames from the service are not read while the run's output backs up: no growth without bound. */
    if (input_open && out.len < OUT_HIGH_WATER) { i_in = nfds; fds[nfds++] = (struct pollfd){0, POLLIN, 0}; }
    if (out.len) { i_out = nfds; fds[nfds++] = (struct pollfd){1, POLLOUT, 0}; }
    i_chld = nfds; fds[nfds++] = (struct pollfd){sigchld_pipe[0], POLLIN, 0};
    if (run.active && !run.exited) {
      if (run.in_fd >= 0 && run.stdin_queue.len) { i_pin = nfds; fds[nfds++] = (struct pollfd){run.in_fd, POLLOUT, 0}; }
      if (out.len < OUT_HIGH_WATER) {
        if (run.out_fd >= 0) { i_pout = nfds; fds[nfds++] = (struct pollfd){run.out_fd, POLLIN, 0}; }
        if (run.err_fd >= 0) { i_perr = nfds; fds[nfds++] = (struct pollfd){run.err_fd, POLLIN, 0}; }
      }
    }
    int timeout = -1;
    if (run.active && !run.exited) {
      int64_t wait = next_check - now_ms();
      timeout = wait < 0 ? 0 : (int)wait;
    }
    if (!input_open && !run.active && out.len == 0) break;
    int ready = poll(fds, (nfds_t)nfds, timeout);
    if (ready < 0 && errno != EINTR) die_errno("poll");
    if (ready < 0) continue;

    if (i_out >= 0 && (fds[i_out].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(1, buf_head(&out), out.len);
      if (n > 0) buf_consume(&out, (size_t)n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        /* The service is gone: nobody to report to. */
        if (run.active) kill_all(run.uid);
        _exit(0);
      }
    }
    if (i_chld >= 0 && fds[i_chld].revents) {
      drain_sigchld();
      reap();
    }
    if (i_pin >= 0 && fds[i_pin].revents) write_stdin();
    if (i_pout >= 0 && fds[i_pout].revents) read_output(&run.out_fd, 1);
    if (i_perr >= 0 && fds[i_perr].revents) read_output(&run.err_fd, 2);
    if (i_in >= 0 && (fds[i_in].revents & (POLLIN | POLLHUP | POLLERR))) {
      buf_reserve(&in, 65536);
      ssize_t n = read(0, in.data + in.start + in.len, 65536);
      if (n > 0) {
        in.len += (size_t)n;
        parse_frames();
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        /* The service closed the stream: end the run, if any, and exit (the container goes with it). */
        input_open = 0;
        if (run.active) kill_all(run.uid);
        _exit(0);
      }
    }
    if (run.active && !run.exited && now_ms() >= next_check) {
      check_limits();
      next_check = now_ms() + POLL_INTERVAL_MS;
    }
    if (run.active && run.ack_pending >= 16384) {
      unsigned char ack[4];
      put_u32(ack, (uint32_t)run.ack_pending);
      send_frame(FR_STDIN_ACK, ack, 4, NULL, 0);
      run.ack_pending = 0;
    }
    if (run.active && run.exited) finish_run();
  }
  return 0;
}
