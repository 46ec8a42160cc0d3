/**
 * The judge engine on the real sandbox, for what is not one submission's tests: an interactive run
 * (Piston's /connect) compiled, then fed and read while it runs; warm sandboxes that are fresh, used once
 * and replaced; a full judging line refused with 503; nothing left at the end.
 */
import test from 'ava';
import { DomainError } from '../../src/errors.js';
import { io, judgeFixture, type JudgeFixture } from './judge-engine-helpers.js';

let fixture: JudgeFixture;
test.before(async () => {
  fixture = await judgeFixture({ POLYKERNEL_JUDGE_WARM: 'python3=1', POLYKERNEL_JUDGE_CONCURRENCY: '1', POLYKERNEL_JUDGE_QUEUE_SIZE: '1' });
});
test.after.always(async () => {
  await fixture?.close();
});

const until = async (check: () => boolean, ms = 20_000) => {
  for (const end = Date.now() + ms; Date.now() < end && !check(); ) await new Promise((resolve) => setTimeout(resolve, 50));
  return check();
};

test.serial('interactive: a compiled program reads lines as they come and answers each; its sandbox goes when it ends', async (t) => {
  const source = '#include <stdio.h>\n#include <ctype.h>\nint main(void){char l[256];while(fgets(l,sizeof l,stdin)){for(char*c=l;*c;c++)*c=toupper(*c);fputs(l,stdout);fflush(stdout);}return 7;}';
  const { engine, config } = fixture;
  const session = await engine.interactive({ lang: 'c', files: [{ name: '', content: Buffer.from(source) }], limits: config.judgeLimits, compileLimits: config.judgeCompileLimits });
  t.true(session.compile?.ok);
  const run = session.run!;
  let out = '';
  run.onOutput((stream, data) => {
    if (stream === 'stdout') out += data.toString();
  });
  run.write(Buffer.from('hello\n'));
  t.true(await until(() => out === 'HELLO\n'), `first answer before the second line: ${JSON.stringify(out)}`);
  run.write(Buffer.from('again\n'));
  t.true(await until(() => out === 'HELLO\nAGAIN\n'));
  run.endInput();
  const ended = await run.done;
  t.is(ended.exitCode, 7);
  await session.close();
  t.true(await until(() => fixture.leftovers().length <= 1), 'only the warm python3 sandbox is left');
});

test.serial('warm sandboxes: a submission takes the ready one, which is replaced by a new one and removed after', async (t) => {
  t.true(await until(() => fixture.leftovers().length === 1), 'the warm sandbox is up');
  const [warm] = fixture.leftovers();
  const before = fixture.sandboxes.runs.length;
  const result = await fixture.engine.judge(fixture.submission('python3', 'print(input()[::-1])', [io('abc', 'cba')]));
  t.is(result.verdict, 'accepted');
  const used = fixture.sandboxes.runs.slice(before).map((run) => run.sandboxId);
  t.true(used.length === 1 && used[0].startsWith(warm), 'the warm sandbox ran the test');
  t.true(await until(() => fixture.leftovers().length === 1 && !fixture.leftovers().includes(warm)), 'the used one is gone, a fresh one replaces it');
});

test.serial('one judged at a time, one waiting: the next is refused with 503 unavailable', async (t) => {
  const slow = fixture.submission('python3', 'import time\ntime.sleep(3)\n', [io('')]);
  // The slot of the test before is released once its sandbox is removed, which is after its answer.
  t.true(await until(() => fixture.engine.load.active === 0));
  const first = fixture.engine.judge(slow);
  const second = fixture.engine.judge(slow);
  const refused = await fixture.engine.judge(slow).then(
    () => undefined,
    (error: DomainError) => error,
  );
  t.is(refused?.code, 'unavailable');
  t.regex(refused?.message ?? '', /queue is full/);
  t.deepEqual([(await first).verdict, (await second).verdict], ['accepted', 'accepted']);
});

test.serial('stop removes every sandbox, warm ones too', async (t) => {
  await fixture.engine.stop();
  t.true(await until(() => fixture.leftovers().length === 0, 10_000), fixture.leftovers().join());
});
