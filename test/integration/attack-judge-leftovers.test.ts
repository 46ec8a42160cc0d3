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
  if (result.tests[0].verdict === 'memory_limit_exceeded') t.is(result.tests[0].killedFor, 'memory');
  else t.regex(result.tests[0].stdout.toString(), /^made \d+ files/);
  for (const later of result.tests.slice(1)) {
    if (later.verdict === 'internal_error') continue;
    t.is(later.stdout.toString(), 'left 0\n');
  }
});
}
