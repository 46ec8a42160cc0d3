/**
 * A contestant's program that leaves as much as it can for the clean-up between two tests, on the real
 * engine: a million empty files (no tmpfs blocks, only inodes) across the writable places. The next test
 * still runs clean, or the sandbox is given up (internal errors), never a hang or a leak into a test.
 */
import test from 'ava';
import { io, judgeFixture, type JudgeFixture } from './judge-engine-helpers.js';

let fixture: JudgeFixture;
test.before(async () => {
  fixture = await judgeFixture();
});
test.after.always(async () => {
  await fixture?.close();
});

const MANY_FILES = `#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(void) {
  char input[64] = {0};
  if (fgets(input, sizeof input, stdin) && input[0] == 'l') {
    /* The later test: what is left of the earlier one? */
    const char *dirs[] = {"/tmp", "/dev/shm", "/home/work"};
    int left = 0;
    for (int d = 0; d < 3; d++) { char p[64]; snprintf(p, sizeof p, "%s/f0", dirs[d]); left += access(p, F_OK) == 0; }
    printf("left %d\\n", left);
    return 0;
  }
  const char *dirs[] = {"/tmp", "/dev/shm", "/home/work"};
  time_t end = time(0) + SECONDS;
  long n = 0;
  char path[64];
  while (time(0) < end) {
    for (int i = 0; i < 1000; i++, n++) {
      snprintf(path, sizeof path, "%s/f%ld", dirs[n % 3], n);
      int fd = open(path, O_CREAT | O_WRONLY, 0600);
      if (fd < 0) { printf("made %ld files, then %s\\n", n, strerror(errno)); return 0; }
      close(fd);
    }
  }
  printf("made %ld files\\n", n);
  return 0;
}
`;

for (const seconds of [4, 15]) {
test.serial(`a program that makes as many empty files as it can for ${seconds} s: the next test sees none of them, or the sandbox is given up`, async (t) => {
  t.timeout(180_000);
  const started = Date.now();
  const source = MANY_FILES.replace('#include <fcntl.h>', '#include <errno.h>\n#include <fcntl.h>').replace('SECONDS', String(seconds));
  const limits = { ...fixture.config.judgeLimits, wallTimeMs: 20_000, cpuTimeMs: 15_000 };
  const result = await fixture.engine.judge(fixture.submission('c', source, [io('make'), io('look'), io('look')], { limits }));
  t.log(`${Date.now() - started} ms: ${JSON.stringify(result.tests.map((r) => [r.verdict, r.message, r.stdout.toString().trim(), r.wallTimeMs, r.memoryKB]))}`);
  // Their inodes are kernel memory charged to the sandbox: past its cap the run is killed for memory.
  const first = result.tests[0]!;
  if (first.verdict === 'memory_limit_exceeded') t.is(first.killedFor, 'memory');
  // A loaded machine may not empty half a million files within the sandbox's grace: it is given up.
  else if (first.verdict === 'internal_error') t.regex(first.message ?? '', /the sandbox failed/);
  else t.regex(first.stdout.toString(), /^made \d+ files/);
  for (const later of result.tests.slice(1)) {
    if (later.verdict === 'internal_error') continue;
    t.is(later.stdout.toString(), 'left 0\n');
  }
});
}

const MESSAGE_QUEUE = `#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
  char input[64] = {0}, got[8192] = {0};
  if (!fgets(input, sizeof input, stdin)) return 2;
  input[strcspn(input, "\\n")] = 0;
  mqd_t q = mq_open("/leak", O_RDWR | O_NONBLOCK);
  if (q != (mqd_t)-1 && mq_receive(q, got, sizeof got, 0) > 0) printf("queue had [%s] ", got);
  /* An abstract socket another test could connect to (it dies with its holder). */
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {AF_UNIX, "\\0leak"};
  if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) { read(s, got, sizeof got); printf("socket had [%s] ", got); }
  struct mq_attr attr = {0, 4, 64, 0};
  q = mq_open("/leak", O_RDWR | O_CREAT, 0666, &attr);
  if (q != (mqd_t)-1 && mq_send(q, input, strlen(input) + 1, 0) == 0) printf("queued ");
  fflush(stdout);
  if (fork() == 0) {
    setsid();
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0 && printf("listening ") > 0 && fflush(stdout) == 0)
      for (;;) { int c = accept(l, 0, 0); write(c, input, strlen(input) + 1); close(c); }
    _exit(0);
  }
  usleep(50000);
  /* The same run sees both (they work here). */
  s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr *)&a, sizeof a) == 0 && read(s, got, sizeof got) > 0) printf("own socket ");
  printf("done\\n");
  return 0;
}
`;

test.serial('a POSIX message queue and an abstract socket left by a test are gone for the next', async (t) => {
  const result = await fixture.engine.judge(fixture.submission('c', MESSAGE_QUEUE, [io('ONE\n'), io('TWO\n'), io('THREE\n')]));
  t.deepEqual(result.tests.map((r) => r.stdout.toString()), ['queued listening own socket done\n', 'queued listening own socket done\n', 'queued listening own socket done\n'], JSON.stringify(result.tests.map((r) => [r.verdict, r.stderr.toString()])));
});
