/**
 * The compile step as an attack, on the real engine: code the contestant's files get run as the builder
 * at compile time (javac runs any annotation processor it finds on its class path, which is the work
 * directory) leaves builder files the program may write, so that a test would see what an earlier test
 * wrote there (its input). The supervisor takes every write permission of others from the builder's files
 * after each compile step.
 */
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { ATTACK_RUNTIMES, fixturePerRuntime, io, type JudgeFixture } from './judge-engine-helpers.js';

const RUNTIMES = ATTACK_RUNTIMES;
const fixtures = fixturePerRuntime(test);

/** Run by javac at compile time (as the builder): a file every user may write, a directory too, the work directory without its sticky bit. */
const PROCESSOR = `import javax.annotation.processing.*;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.TypeElement;
import java.nio.file.*;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;
@SupportedAnnotationTypes("*")
public class Evil extends AbstractProcessor {
  static boolean done;
  public boolean process(Set<? extends TypeElement> a, RoundEnvironment r) {
    if (done) return false;
    done = true;
    try {
      Path box = Paths.get("/home/work/box");
      Files.write(box, new byte[0]);
      Files.setPosixFilePermissions(box, PosixFilePermissions.fromString("rw-rw-rw-"));
      Path shelf = Paths.get("/home/work/shelf");
      Files.createDirectory(shelf);
      Files.write(shelf.resolve("a"), new byte[0]);
      Files.setPosixFilePermissions(shelf, PosixFilePermissions.fromString("rwxrwxrwx"));
      Files.setPosixFilePermissions(Paths.get("/home/work"), PosixFilePermissions.fromString("rwxrwxrwx"));
    } catch (Exception e) { throw new RuntimeException(e); }
    return false;
  }
  public SourceVersion getSupportedSourceVersion() { return SourceVersion.latest(); }
}
`;

/** Each test prints what the one before left (in the box, or by renaming the builder's shelf/a), then leaves its own input. */
const PROGRAM = `import java.nio.file.*;
public class Main {
  public static void main(String[] args) throws Exception {
    String input = new String(System.in.readAllBytes()).trim();
    String left = "";
    try { left = new String(Files.readAllBytes(Paths.get("/home/work/box"))).trim(); } catch (Exception e) {}
    try (DirectoryStream<Path> shelf = Files.newDirectoryStream(Paths.get("/home/work/shelf"))) { for (Path p : shelf) left += " shelf:" + p.getFileName(); } catch (Exception e) {}
    System.out.println("saw [" + left + "]");
    try { Files.write(Paths.get("/home/work/box"), input.getBytes()); } catch (Exception e) {}
    try { Files.move(Paths.get("/home/work/shelf/a"), Paths.get("/home/work/shelf/" + input)); } catch (Exception e) {}
  }
}
`;

function processorClass(fixture: JudgeFixture): Buffer {
  const image = `${fixture.config.imagePrefix}java:latest`;
  const base64 = execFileSync('docker', ['run', '--rm', '-i', '--network', 'none', '--label', 'org.polykernel.test=attack-judge-builder', image, 'sh', '-c', 'cd /tmp && cat > Evil.java && javac -d /tmp Evil.java && base64 -w0 Evil.class'], {
    input: PROCESSOR,
  }).toString();
  return Buffer.from(base64, 'base64');
}

for (const runtime of RUNTIMES) {
test.serial(`${runtime}: java: an annotation processor among the files runs at compile time, yet no test sees what an earlier one left`, async (t) => {
  const fixture = fixtures[runtime];
  const files = [
    { name: 'Main.java', content: Buffer.from(PROGRAM) },
    { name: 'Evil.class', content: processorClass(fixture) },
    { name: 'META-INF/services/javax.annotation.processing.Processor', content: Buffer.from('Evil\n') },
  ];
  const result = await fixture.engine.judge(fixture.submission('java', PROGRAM, [io('ONE'), io('TWO'), io('THREE')], {
    files,
    // A JVM under gVisor is measured past 128 MB (its RSS counts differently there).
    limits: { ...fixture.config.judgeLimits, memoryKB: fixture.config.judgeLimitCaps.memoryKB },
  }));
  t.is(result.compilations, 1);
  t.true(result.compile?.ok, result.compile?.stderr.toString());
  const seen = result.tests.map((r) => r.stdout.toString().trim());
  t.log(seen.join(' | '), JSON.stringify(result.tests.map((r) => [r.verdict, r.message, r.exitCode, r.signal])));
  // The processor did run (the builder's shelf is there) — the attack is real — and nothing passed between tests.
  t.deepEqual(seen, ['saw [ shelf:a]', 'saw [ shelf:a]', 'saw [ shelf:a]'], result.tests.map((r) => r.stderr.toString()).join('\n'));
});
}
