/*
 * The file helper of the v1 files routes (src/files/work-dir-files.ts is the other side and documents the
 * output). The service runs it with `docker exec` as the kernel's user (never root), under `timeout`, to
 * list, read and write files of the work directory, where the kernel's code (a stranger's, the same user)
 * may plant links or swap a directory for a link at any moment.
 *
 * Confinement: every path is walked from a descriptor of the work directory one component at a time, each
 * opened with openat(O_NOFOLLOW) relative to the descriptor of the one before and checked with fstat: a
 * directory where a directory is needed, and on the work directory's own file system (st_dev), so a link
 * anywhere on the path fails the walk (ELOOP) instead of being followed, whenever it appears, and nothing
 * outside the work directory's tmpfs is ever opened. ".." and empty or "." components are refused before
 * any walk; a rename or swap between two steps cannot move the walk out of the tree it holds.
 * O_DIRECTORY is not used on the walk: gVisor (runsc 2022-12) follows a link to a directory when it is
 * given O_DIRECTORY|O_NOFOLLOW (Linux refuses it with ENOTDIR), while O_NOFOLLOW alone is honoured by both.
 * Components are opened O_NONBLOCK|O_NOCTTY so that a FIFO (or a terminal) in their place is opened at
 * once and refused, never waited on. openat2's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS would do the walk in
 * one call, but gVisor and older kernels lack it, and a second code path would be tested on one runtime only.
 *
 *   files list <root> <max-entries> <dir>
 *       "e <type> <mode-octal> <size> <mtime-s> <mtime-ns> <name>\0" per entry (type f d l o; never
 *       followed), then "t\0" when more than max-entries were there, then ".\0".
 *   files get <root> <max-total-bytes> <path>...
 *       opens every file first (regular files only; FIFOs are opened non-blocking and refused), then
 *       "f <index> <size> <mode-octal> <mtime-s>\n" per file and "data\n", then exactly <size> bytes of each
 *       file in order (cut at <size> when it grew since, padded with zeros when it shrank).
 *   files put <root> <max-files>
 *       reads "f <path>\n" per file, its data as chunks ("<length>\n" + <length> bytes, at most 1 MiB each)
 *       ended by "0\n", then "commit\n" after the last file; the data is held in unnamed
 *       files (O_TMPFILE) of the work directory's file system and linked into place only at the commit,
 *       parents created then, so a request refused before its commit leaves nothing behind. An existing
 *       regular file is replaced (rename over it: a link swapped in meanwhile is replaced, never followed);
 *       an existing directory, link or other file is refused. Answers "ok\n".
 * Any refusal is "error <kind> <index>\n" (exit 2), kind one of: missing notdir symlink isdir notfile
 * toobig denied nospace name exists outside io usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_PATH_BYTES 1024
#define MAX_SEGMENT_BYTES 255
#define MAX_FILES 1000
#define CHUNK (64u << 10)

static void out_all(const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(1); /* the service went away */
    }
    p += n;
    len -= (size_t)n;
  }
}

static void outf(const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line) _exit(1);
  out_all(line, (size_t)n);
}

static __attribute__((noreturn)) void refuse(const char *kind, int index) {
  outf("error %s %d\n", kind, index);
  exit(2);
}

static const char *kind_of_errno(int error) {
  switch (error) {
    case ENOENT: return "missing";
    case ENOTDIR: return "notdir";
    case ELOOP: return "symlink";
    case EISDIR: return "isdir";
    case EACCES:
    case EPERM: return "denied";
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return "nospace";
    case ENAMETOOLONG: return "name";
    case EXDEV: return "outside";
    case EEXIST:
    case ENOTEMPTY: return "exists";
    case ENXIO:
    case ENODEV:
    case ETXTBSY: return "notfile";
    default: return "io";
  }
}

/* The same rules as the service's fileNameProblem: relative, normalised, no control characters. */
static int name_ok(const char *path) {
  size_t len = strlen(path);
  if (len == 0 || len > MAX_PATH_BYTES || path[0] == '/') return 0;
  for (const unsigned char *c = (const unsigned char *)path; *c; c++)
    if (*c < 0x20 || *c == 0x7f) return 0;
  const char *seg = path;
  for (;;) {
    const char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if (n == 0 || n > MAX_SEGMENT_BYTES) return 0;
    if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
    if (!end) return 1;
    seg = end + 1;
  }
}

static dev_t root_dev;

static int open_root(const char *root) {
  /* The work directory is a mount point on the read-only root fs: the kernel's user cannot replace it. */
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) refuse("io", -1);
  root_dev = st.st_dev;
  return fd;
}

/*
 * Opens one name in `dirfd` without following a link (ELOOP), and checks what was opened: on the work
 * directory's file system (else EXDEV), and a directory when `want_dir` (else ENOTDIR).
 */
static int open_component(int dirfd, const char *name, int want_dir) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  int error = 0;
  if (fstat(fd, &st) < 0) error = errno;
  else if (st.st_dev != root_dev) error = EXDEV;
  else if (S_ISLNK(st.st_mode)) error = ELOOP;
  else if (want_dir && !S_ISDIR(st.st_mode)) error = ENOTDIR;
  if (error) {
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

/* Directories a put created: removed again (when still empty) if the put is refused after all. */
#define MAX_CREATED 4096
static struct {
  int parent;
  char name[MAX_SEGMENT_BYTES + 1];
} created[MAX_CREATED];
static int created_count;

/*
 * Walks the directories of `path` below `dirfd` (every component but the last) with open_component.
 * When `create` is set, a missing directory is made (0755) and then opened the same way, so a link swapped
 * in between the two is refused too. Returns the parent's descriptor and points *last at the last name,
 * or returns -1 with errno set.
 */
static int walk_parent(int dirfd, char *path, const char **last, int create) {
  int cur = dup(dirfd);
  if (cur < 0) return -1;
  char *seg = path;
  for (;;) {
    char *slash = strchr(seg, '/');
    if (!slash) break;
    *slash = '\0';
    int next = open_component(cur, seg, 1);
    if (next < 0 && errno == ENOENT && create) {
      if (mkdirat(cur, seg, 0755) < 0) {
        if (errno != EEXIST) {
          int e = errno;
          *slash = '/';
          close(cur);
          errno = e;
          return -1;
        }
      } else if (created_count < MAX_CREATED) {
        created[created_count].parent = dup(cur);
        snprintf(created[created_count].name, sizeof created[created_count].name, "%s", seg);
        created_count++;
      }
      next = open_component(cur, seg, 1);
    }
    int e = errno;
    *slash = '/';
    close(cur);
    if (next < 0) {
      errno = e;
      return -1;
    }
    cur = next;
    seg = slash + 1;
  }
  *last = seg;
  return cur;
}

/* Opens `path` below `rootfd`, every component walked as walk_parent does, the last one a directory when `want_dir`. */
static int open_beneath(int rootfd, const char *path, int want_dir) {
  char copy[MAX_PATH_BYTES + 1];
  snprintf(copy, sizeof copy, "%s", path);
  const char *last;
  int parent = walk_parent(rootfd, copy, &last, 0);
  if (parent < 0) return -1;
  int fd = open_component(parent, last, want_dir);
  int e = errno;
  close(parent);
  errno = e;
  return fd;
}

static char type_char(mode_t mode) {
  if (S_ISREG(mode)) return 'f';
  if (S_ISDIR(mode)) return 'd';
  if (S_ISLNK(mode)) return 'l';
  return 'o';
}

static int cmd_list(int rootfd, long max_entries, const char *dir) {
  int fd = -1;
  if (strcmp(dir, "") == 0 || strcmp(dir, ".") == 0) fd = dup(rootfd);
  else if (!name_ok(dir)) refuse("name", 0);
  else fd = open_beneath(rootfd, dir, 1);
  if (fd < 0) refuse(kind_of_errno(errno), 0);
  DIR *d = fdopendir(fd);
  if (!d) refuse(kind_of_errno(errno), 0);
  long count = 0;
  struct dirent *entry;
  while ((errno = 0, entry = readdir(d)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    struct stat st;
    /* Gone between readdir and the stat: it is not there any more. */
    if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    if (count == max_entries) {
      out_all("t", 2); /* "t\0" */
      break;
    }
    count++;
    outf("e %c %o %lld %lld %ld ", type_char(st.st_mode), (unsigned)(st.st_mode & 07777), (long long)st.st_size,
         (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    out_all(entry->d_name, strlen(entry->d_name) + 1);
  }
  if (errno != 0 && entry == NULL) refuse(kind_of_errno(errno), 0);
  out_all(".", 2);
  closedir(d);
  return 0;
}

static int cmd_get(int rootfd, long long max_total, int count, char **paths) {
  static int fds[MAX_FILES];
  static struct stat st[MAX_FILES];
  if (count < 1 || count > MAX_FILES) refuse("usage", -1);
  long long total = 0;
  for (int i = 0; i < count; i++) {
    if (!name_ok(paths[i])) refuse("name", i);
    fds[i] = open_beneath(rootfd, paths[i], 0);
    if (fds[i] < 0) refuse(kind_of_errno(errno), i);
    if (fstat(fds[i], &st[i]) < 0) refuse("io", i);
    if (S_ISDIR(st[i].st_mode)) refuse("isdir", i);
    if (!S_ISREG(st[i].st_mode)) refuse("notfile", i);
    total += st[i].st_size;
    if (total > max_total) refuse("toobig", i);
  }
  for (int i = 0; i < count; i++)
    outf("f %d %lld %o %lld\n", i, (long long)st[i].st_size, (unsigned)(st[i].st_mode & 07777), (long long)st[i].st_mtim.tv_sec);
  out_all("data\n", 5);
  static char buf[CHUNK];
  for (int i = 0; i < count; i++) {
    long long left = st[i].st_size;
    while (left > 0) {
      size_t want = left < (long long)sizeof buf ? (size_t)left : sizeof buf;
      ssize_t n = read(fds[i], buf, want);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        /* Shrank (or unreadable) since the stat: the size announced is kept, with zeros. */
        memset(buf, 0, want);
        n = (ssize_t)want;
      }
      out_all(buf, (size_t)n);
      left -= n;
    }
    close(fds[i]);
  }
  return 0;
}

/* Reads one "\n"-ended line of at most cap-1 bytes; 0 at a clean EOF, -1 when too long or cut. */
static int read_line(char *line, size_t cap) {
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read(STDIN_FILENO, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return n == 0 ? 0 : -1;
    if (c == '\n') {
      line[n] = '\0';
      return 1;
    }
    if (n + 1 >= cap) return -1;
    line[n++] = c;
  }
}

struct staged {
  int fd;
  char path[MAX_PATH_BYTES + 1];
  /* A named stand-in when the file system has no O_TMPFILE: removed unless committed. */
  char temp[64];
};

static struct staged staged[MAX_FILES];
static int staged_count;
static int root_fd = -1;

static void drop_staged(void) {
  for (int i = 0; i < staged_count; i++)
    if (staged[i].temp[0]) unlinkat(root_fd, staged[i].temp, 0);
  for (int i = created_count - 1; i >= 0; i--)
    if (created[i].parent >= 0) unlinkat(created[i].parent, created[i].name, AT_REMOVEDIR);
}

static __attribute__((noreturn)) void refuse_put(const char *kind, int index) {
  drop_staged();
  refuse(kind, index);
}

#define MAX_CHUNK (1u << 20)

/* Copies one file's chunks from stdin into a staged file: 0, -1 with errno, or -2 for a malformed input. */
static int stage_file(int index, const char *path) {
  struct staged *s = &staged[index];
  size_t path_len = strlen(path);
  if (path_len > MAX_PATH_BYTES) return -2;
  memcpy(s->path, path, path_len + 1);
  s->temp[0] = '\0';
  s->fd = openat(root_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  if (s->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    snprintf(s->temp, sizeof s->temp, ".polykernel-upload-%d-%d", (int)getpid(), index);
    s->fd = openat(root_fd, s->temp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (s->fd < 0) s->temp[0] = '\0';
  }
  if (s->fd < 0) return -1;
  staged_count = index + 1;
  static char buf[CHUNK];
  for (;;) {
    char line[32];
    if (read_line(line, sizeof line) <= 0) return -2;
    char *end;
    long long size = strtoll(line, &end, 10);
    if (end == line || *end != '\0' || size < 0 || size > MAX_CHUNK) return -2;
    if (size == 0) break;
    while (size > 0) {
      size_t want = size < (long long)sizeof buf ? (size_t)size : sizeof buf;
      ssize_t n = read(STDIN_FILENO, buf, want);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -2;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(s->fd, buf + off, (size_t)(n - off));
        if (w < 0) {
          if (errno == EINTR) continue;
          return -1;
        }
        off += w;
      }
      size -= n;
    }
  }
  if (fchmod(s->fd, 0644) < 0) return -1;
  return 0;
}

/* Puts a staged file at its name in `parent`: linked under a fresh name, then renamed over the target. */
static int commit_file(int parent, const char *name, struct staged *s, int index) {
  char tmpname[64];
  snprintf(tmpname, sizeof tmpname, ".polykernel-commit-%d-%d", (int)getpid(), index);
  if (s->temp[0]) {
    if (renameat(root_fd, s->temp, parent, name) < 0) return -1;
    s->temp[0] = '\0';
    return 0;
  }
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", s->fd);
  /* An O_TMPFILE file gets a name only this way without CAP_DAC_READ_SEARCH (linkat AT_EMPTY_PATH). */
  if (linkat(AT_FDCWD, proc, parent, tmpname, AT_SYMLINK_FOLLOW) < 0) return -1;
  if (renameat(parent, tmpname, parent, name) < 0) {
    int e = errno;
    unlinkat(parent, tmpname, 0);
    errno = e;
    return -1;
  }
  return 0;
}

static int cmd_put(long max_files) {
  char line[MAX_PATH_BYTES + 64];
  int count = 0;
  for (;;) {
    int r = read_line(line, sizeof line);
    if (r <= 0) refuse_put("usage", count); /* cut short: the service gave up on the request */
    if (strcmp(line, "commit") == 0) break;
    if (count >= max_files || count >= MAX_FILES) refuse_put("usage", count);
    if (line[0] != 'f' || line[1] != ' ') refuse_put("usage", count);
    const char *path = line + 2;
    if (!name_ok(path)) refuse_put("name", count);
    int s = stage_file(count, path);
    if (s == -2) refuse_put("usage", count);
    if (s < 0) refuse_put(kind_of_errno(errno), count);
    count++;
  }
  /* Every target is checked (parents walked, created when missing) before any file is put in place. */
  static int parents[MAX_FILES];
  static const char *names[MAX_FILES];
  for (int i = 0; i < count; i++) {
    parents[i] = walk_parent(root_fd, staged[i].path, &names[i], 1);
    if (parents[i] < 0) refuse_put(kind_of_errno(errno), i);
    struct stat st;
    if (fstatat(parents[i], names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) refuse_put("isdir", i);
      if (S_ISLNK(st.st_mode)) refuse_put("symlink", i);
      if (!S_ISREG(st.st_mode)) refuse_put("notfile", i);
    } else if (errno != ENOENT) {
      refuse_put(kind_of_errno(errno), i);
    }
  }
  for (int i = 0; i < count; i++)
    if (commit_file(parents[i], names[i], &staged[i], i) < 0) refuse_put(kind_of_errno(errno), i);
  out_all("ok\n", 3);
  return 0;
}

int main(int argc, char **argv) {
  /* Not dumpable: other processes of the same user (the kernel's code) can neither trace this one nor
     read or write its memory through /proc. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  /* A put holds a descriptor per staged file, per target directory and per directory it made. */
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  if (argc < 4) refuse("usage", -1);
  root_fd = open_root(argv[2]);
  char *end;
  long long n = strtoll(argv[3], &end, 10);
  if (*end != '\0' || n < 0) refuse("usage", -1);
  if (strcmp(argv[1], "list") == 0 && argc == 5) return cmd_list(root_fd, (long)n, argv[4]);
  if (strcmp(argv[1], "get") == 0 && argc >= 5) return cmd_get(root_fd, n, argc - 4, argv + 4);
  if (strcmp(argv[1], "put") == 0 && argc == 4) return cmd_put((long)n);
  refuse("usage", -1);
}
