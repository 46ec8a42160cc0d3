/**
 * Judging: a submission (source files, limits, test cases) compiled once in a fresh sandbox, then run once
 * per test case inside that same sandbox, each run measured and given a verdict.
 *
 * Two seams, one per layer:
 * - `JudgeSandbox` is one sandbox container with its supervisor (images/base/judge): files in, runs with
 *   limits, measurements out. Everything about containers lives behind `JudgeSandboxes`, so that a node
 *   agent can place sandboxes on another host later; its arguments and results are plain data.
 * - `JudgeEngine` is what the APIs (Judge0's, Piston's) call: a submission in, a result per test case out.
 *
 * Units are those of the names: ms, KB, bytes. Buffers carry program data byte for byte; the APIs decide
 * how to encode it.
 */

/** Limits of one run (a compile step or one test case). Each has a server default and a server cap. */
export interface RunLimits {
  /** CPU time of the whole process tree. */
  cpuTimeMs: number;
  /** Judge0's cpu_extra_time: CPU beyond `cpuTimeMs` before the run is killed (the verdict still says TLE). */
  extraCpuTimeMs: number;
  wallTimeMs: number;
  /** Peak resident memory of the program (not what a runtime reserves: JVM and Go are measured fairly). */
  memoryKB: number;
  stackKB: number;
  /** Processes and threads of the run together. */
  maxProcesses: number;
  /** stdout and stderr together; the run is killed past it and what came before is kept. */
  maxOutputBytes: number;
  /** The largest file the run may write (SIGXFSZ past it). */
  maxFileSizeKB: number;
}

export interface SourceFile {
  /** A relative path inside the sandbox's work directory: no `..`, no absolute path, no odd names. */
  name: string;
  content: Buffer;
}

/** How a run ended, as measured by the supervisor. */
export interface RunMeasurement {
  /** CPU time of the process tree (user + system). */
  cpuTimeMs: number;
  wallTimeMs: number;
  /** Peak resident memory of the process tree. */
  memoryKB: number;
  /** Exit status when it exited; null when a signal ended it. */
  exitCode: number | null;
  /** The signal that ended it, by name ('SIGSEGV', 'SIGKILL', ...); null when it exited. */
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Why the supervisor killed the run, when it did. Output up to the kill is kept. */
  killedFor?: 'cpu-time' | 'wall-time' | 'memory' | 'output' | 'processes';
}

/** One run inside a sandbox: a command with its limits, and the bytes of its standard input. */
export interface RunRequest {
  argv: string[];
  stdin: Buffer;
  limits: RunLimits;
  /** Environment of the run, beside the sandbox's own (PATH, HOME, LANG). */
  env?: Record<string, string>;
  /** A compile step runs as the builder (whose files the tests cannot change); a test as the program. */
  as: 'builder' | 'program';
  /** stderr joined into stdout, in order (Judge0's redirect_stderr_to_stdout). */
  stderrToStdout?: boolean;
}

/** A run whose standard streams stay open (Piston's /connect): stdin in, output out as it comes. */
export interface InteractiveRun {
  write(data: Buffer): void;
  /** Closes the program's standard input. */
  endInput(): void;
  signal(name: string): void;
  onOutput(listener: (stream: 'stdout' | 'stderr', data: Buffer) => void): void;
  /** Resolves when the run ended, with its measurement (stdout and stderr empty: they were streamed). */
  readonly done: Promise<RunMeasurement>;
}

export interface SandboxSpec {
  /** The language image (a kernel image: its build/exec labels say how to compile and run). */
  image: string;
  runtime: string;
  /** The largest memory limit of any run the sandbox will do; the container's cap adds the supervisor's share. */
  memoryKB: number;
  maxProcesses: number;
  /** Size of the work directory and of /tmp, each. */
  diskMB: number;
}

/** One sandbox: used by one submission only, then removed. */
export interface JudgeSandbox {
  readonly id: string;
  /** Writes files into the work directory as the builder, before any code runs. */
  writeFiles(files: SourceFile[]): Promise<void>;
  /**
   * Runs one command and measures it. Between two runs every process of the program is killed and every
   * place the program can write (work directory entries that are not the builder's, /tmp, /dev/shm) is
   * emptied, so no test case sees another's input or leftovers.
   */
  run(request: RunRequest): Promise<RunMeasurement>;
  runInteractive(request: Omit<RunRequest, 'stdin'>): InteractiveRun;
  /** Removes the container; safe to call more than once. */
  close(): Promise<void>;
}

/** Places sandboxes (today: containers on this host's Docker engine). */
export interface JudgeSandboxes {
  create(spec: SandboxSpec): Promise<JudgeSandbox>;
  /** Removes sandboxes an earlier run of the service left behind. */
  reap(): Promise<void>;
}

export type Verdict =
  | 'accepted'
  | 'wrong_answer'
  | 'time_limit_exceeded'
  | 'memory_limit_exceeded'
  | 'runtime_error'
  | 'compilation_error'
  | 'output_limit_exceeded'
  | 'internal_error';

/** How a program's output is compared with the expected output. */
export type Comparison =
  /** Judge0's default: trailing whitespace of each line and trailing blank lines are ignored. */
  | 'lines'
  | 'exact'
  /** Whitespace-separated tokens must be equal. */
  | 'tokens';

export interface TestCase {
  stdin: Buffer;
  /** Absent: the run is measured and gets a verdict from how it ended only (no wrong answer). */
  expectedOutput?: Buffer;
  /** Per-test overrides of the submission's run limits. */
  limits?: Partial<RunLimits>;
}

/**
 * A special judge: a program of its own, compiled and run in a sandbox of its own (never the program's),
 * called testlib's way as `checker input output answer`; exit 0 accepts, 1 or 2 is a wrong answer, any
 * other ending is an internal error. Its stdout/stderr is its message.
 */
export interface Checker {
  lang: string;
  files: SourceFile[];
}

export interface Submission {
  /** A kernel name or alias (python3, c, cpp, java, ...). */
  lang: string;
  /** The first file is the main one; a single-file submission's name may be left to the language ('' = its default). */
  files: SourceFile[];
  /** Appended to the language's compile command (Judge0's compiler_options). */
  compilerOptions?: string;
  /** Appended to the language's run command (Judge0's command_line_arguments, Piston's args). */
  args?: string[];
  limits: RunLimits;
  compileLimits: RunLimits;
  tests: TestCase[];
  comparison: Comparison;
  checker?: Checker;
  stderrToStdout?: boolean;
  /** Judge0's number_of_runs: each test is run this many times, the figures averaged. */
  runsPerTest?: number;
}

export interface CompileResult extends RunMeasurement {
  ok: boolean;
}

export interface TestResult extends RunMeasurement {
  verdict: Verdict;
  /** For a time limit: which one. */
  timeLimit?: 'cpu' | 'wall';
  /** Why, for a human: "Exited with error status 1", "Killed by SIGSEGV", the checker's message, ... */
  message?: string;
}

export interface JudgeResult {
  /** Absent for an interpreted language (nothing to compile). */
  compile?: CompileResult;
  /** One per test case, in order; empty after a compilation error. */
  tests: TestResult[];
  /** The first test's verdict that is not accepted, else accepted (compilation_error when compile failed). */
  verdict: Verdict;
  /** How many times the program was compiled: 1 (or 0), whatever the number of tests. */
  compilations: number;
}

export interface JudgeLanguage {
  /** The kernel name (python3, c, ...). */
  name: string;
  /** What the image says: "C (gcc 12.2.0)". */
  displayName: string;
  version: string;
  aliases: string[];
  /** The default name of a single source file ("main.c", "Main.java"). */
  sourceFile: string;
  compileCommand?: string;
  runCommand: string;
}

/** What the judging APIs call. */
export interface JudgeEngine {
  languages(): Promise<JudgeLanguage[]>;
  /**
   * Judges a submission. At most the configured number run at once; others wait in a bounded line (a full
   * line is a 503 `unavailable`). An aborted signal ends the submission's runs and removes its sandbox.
   */
  judge(submission: Submission, signal?: AbortSignal): Promise<JudgeResult>;
  /**
   * Piston's /connect: compiles, then runs with the standard streams open. It holds a judging slot until
   * the run ends or `close` is called; an aborted signal (the client went) leaves the line or closes it.
   */
  interactive(
    submission: Omit<Submission, 'tests' | 'comparison' | 'checker'>,
    signal?: AbortSignal,
  ): Promise<{ compile?: CompileResult; run?: InteractiveRun; close(): Promise<void> }>;
}
