/**
 * The conformance table: one row per language, the same cases for every one (conformance.test.ts runs
 * them against the language's image through the v1 API). A new language adds a row.
 *
 * Conventions of the snippets: `hello` prints exactly `HELLO`; `readLine` prints the prompt `name? `,
 * reads one line and prints `hello <line>`; `bigOutput` prints about 330 KB (far over the suite's output
 * limit); `endless` prints `started` (so the suite interrupts a running program, not its compiler), then
 * never ends on its own.
 */
export const HELLO = 'hello, world\n';
export const PROMPT = 'name? ';

export interface LanguageRow {
  /** Kernel name. */
  lang: string;
  /** Image folder, when it differs from the kernel name (polykernel/<image>). */
  image?: string;
  /** An alias the kernel is created with, to check alias resolution. */
  alias?: string;
  /** What kernel_info's language_info must say (its version must be a dotted number). */
  info: { name: string; file_extension: string };
  hello: string;
  readLine: string;
  /** A cell that does not parse / compile: ename of its error message and what stderr must show. */
  syntaxError: { code: string; ename: string | RegExp; stderr: RegExp };
  /** A cell that fails while running. */
  runtimeError: { code: string; ename: string | RegExp; stderr: RegExp };
  endless: string;
  bigOutput: string;
  /** ename of an interrupted cell; null where the kernel publishes no error for it (its reply fails). */
  interruptEname: string | RegExp | null;
  /** For languages that keep state between cells: set it, then read it back (after an interrupt too). */
  state?: { set: string; get: string; stdout: string };
}

const RUNNER_INTERRUPT = 'Interrupted';

export const LANGUAGE_ROWS: LanguageRow[] = [
  {
    lang: 'python3',
    image: 'python',
    alias: 'python',
    info: { name: 'python', file_extension: '.py' },
    hello: 'print("hello, world")',
    readLine: 'name = input("name? ")\nprint("hello", name)',
    syntaxError: { code: 'print("x"', ename: 'SyntaxError', stderr: /SyntaxError/ },
    runtimeError: { code: 'raise ValueError("boom")', ename: 'ValueError', stderr: /ValueError: boom/ },
    endless: 'print("started")\nwhile True:\n    pass',
    bigOutput: 'for i in range(10000):\n    print("line", i, "x" * 20)',
    interruptEname: 'KeyboardInterrupt',
    state: { set: 'counter = 41', get: 'print(counter + 1)', stdout: '42\n' },
  },
  {
    // The data-science Python is a Python first: the same cases as python3's (its plots: python-data.test.ts).
    lang: 'python3-data',
    image: 'python-data',
    alias: 'pydata',
    info: { name: 'python', file_extension: '.py' },
    hello: 'print("hello, world")',
    readLine: 'name = input("name? ")\nprint("hello", name)',
    syntaxError: { code: 'print("x"', ename: 'SyntaxError', stderr: /SyntaxError/ },
    runtimeError: { code: 'raise ValueError("boom")', ename: 'ValueError', stderr: /ValueError: boom/ },
    endless: 'print("started")\nwhile True:\n    pass',
    bigOutput: 'for i in range(10000):\n    print("line", i, "x" * 20)',
    interruptEname: 'KeyboardInterrupt',
    state: { set: 'counter = 41', get: 'print(counter + 1)', stdout: '42\n' },
  },
  {
    lang: 'javascript',
    alias: 'node',
    info: { name: 'javascript', file_extension: '.js' },
    hello: 'console.log("hello, world")',
    readLine: 'const name = input("name? ")\nconsole.log("hello " + name)',
    syntaxError: { code: 'console.log("x"', ename: 'SyntaxError', stderr: /SyntaxError/ },
    runtimeError: { code: 'throw new RangeError("boom")', ename: 'RangeError', stderr: /RangeError: boom/ },
    endless: 'console.log("started")\nwhile (true) {}',
    bigOutput: 'for (let i = 0; i < 10000; i++) console.log("line", i, "x".repeat(20))',
    interruptEname: RUNNER_INTERRUPT,
    state: { set: 'const counter = 41', get: 'console.log(counter + 1)', stdout: '42\n' },
  },
  {
    lang: 'typescript',
    alias: 'ts',
    info: { name: 'typescript', file_extension: '.ts' },
    hello: 'const greeting: string = "hello, world"\nconsole.log(greeting)',
    readLine: 'const name: string = input("name? ")\nconsole.log(`hello ${name}`)',
    syntaxError: { code: 'let x: = 1', ename: 'SyntaxError', stderr: /TS1110: Type expected/ },
    runtimeError: { code: 'const f = (n: number): number => { throw new TypeError("boom " + n) }\nf(1)', ename: 'TypeError', stderr: /TypeError: boom 1/ },
    endless: 'console.log("started")\nwhile (true) {}',
    bigOutput: 'for (let i: number = 0; i < 10000; i++) console.log("line", i, "x".repeat(20))',
    interruptEname: RUNNER_INTERRUPT,
    state: { set: 'interface C { n: number }\nconst counter: C = { n: 41 }', get: 'console.log(counter.n + 1)', stdout: '42\n' },
  },
  {
    lang: 'bash',
    alias: 'sh',
    info: { name: 'bash', file_extension: '.sh' },
    hello: 'echo "hello, world"',
    readLine: 'printf "name? "\nread -r name\necho "hello $name"',
    syntaxError: { code: 'if then fi', ename: 'SyntaxError', stderr: /syntax error/ },
    runtimeError: { code: 'ls /no/such/dir', ename: 'RuntimeError', stderr: /No such file or directory[\s\S]*status 2/ },
    endless: 'echo started\nwhile :; do :; done',
    bigOutput: 'for i in $(seq 1 10000); do echo "line $i xxxxxxxxxxxxxxxxxxxx"; done',
    interruptEname: RUNNER_INTERRUPT,
    state: { set: 'counter=41; cd /tmp', get: 'echo "$((counter + 1)) $PWD"', stdout: '42 /tmp\n' },
  },
  {
    lang: 'c',
    info: { name: 'c', file_extension: '.c' },
    hello: '#include <stdio.h>\nint main(void) { printf("hello, world\\n"); return 0; }',
    readLine: [
      '#include <stdio.h>',
      '#include <string.h>',
      'int main(void) {',
      '  char name[64];',
      '  printf("name? ");',
      '  if (!fgets(name, sizeof name, stdin)) return 1;',
      '  name[strcspn(name, "\\n")] = 0;',
      '  printf("hello %s\\n", name);',
      '  return 0;',
      '}',
    ].join('\n'),
    syntaxError: { code: 'int main(void) { return 0 }', ename: 'CompileError', stderr: /error: expected .;./ },
    runtimeError: { code: '#include <stdio.h>\nint main(void) { fprintf(stderr, "boom\\n"); return 3; }', ename: 'RuntimeError', stderr: /boom[\s\S]*status 3/ },
    endless: '#include <stdio.h>\nint main(void) { puts("started"); volatile unsigned long n = 0; for (;;) n++; }',
    bigOutput: '#include <stdio.h>\nint main(void) { for (int i = 0; i < 10000; i++) printf("line %d xxxxxxxxxxxxxxxxxxxx\\n", i); return 0; }',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'cpp',
    alias: 'c++',
    info: { name: 'c++', file_extension: '.cpp' },
    hello: '#include <iostream>\nint main() { std::cout << "hello, world" << std::endl; }',
    readLine: [
      '#include <iostream>',
      '#include <string>',
      'int main() {',
      '  std::string name;',
      '  std::cout << "name? " << std::flush;',
      '  std::getline(std::cin, name);',
      '  std::cout << "hello " << name << "\\n";',
      '}',
    ].join('\n'),
    syntaxError: { code: 'int main() { return 0 }', ename: 'CompileError', stderr: /error: expected .;./ },
    runtimeError: { code: '#include <stdexcept>\nint main() { throw std::runtime_error("boom"); }', ename: 'RuntimeError', stderr: /boom[\s\S]*SIGABRT/ },
    endless: '#include <iostream>\nint main() { std::cout << "started" << std::endl; volatile unsigned long n = 0; for (;;) n++; }',
    bigOutput: '#include <cstdio>\nint main() { for (int i = 0; i < 10000; i++) std::printf("line %d xxxxxxxxxxxxxxxxxxxx\\n", i); }',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'java',
    info: { name: 'java', file_extension: '.java' },
    hello: 'public class Main {\n  public static void main(String[] args) {\n    System.out.println("hello, world");\n  }\n}',
    readLine: [
      'import java.io.*;',
      'public class Main {',
      '  public static void main(String[] args) throws IOException {',
      '    System.out.print("name? ");',
      '    System.out.flush();',
      '    String name = new BufferedReader(new InputStreamReader(System.in)).readLine();',
      '    System.out.println("hello " + name);',
      '  }',
      '}',
    ].join('\n'),
    syntaxError: { code: 'public class Main { public static void main(String[] a) { int x = 1 } }', ename: 'CompileError', stderr: /error: ';' expected/ },
    runtimeError: {
      code: 'public class Main { public static void main(String[] a) { throw new IllegalStateException("boom"); } }',
      ename: 'RuntimeError',
      stderr: /IllegalStateException: boom[\s\S]*status 1/,
    },
    endless: 'public class Main { public static void main(String[] a) { System.out.println("started"); long n = 0; while (true) n++; } }',
    bigOutput: 'public class Main { public static void main(String[] a) { for (int i = 0; i < 10000; i++) System.out.println("line " + i + " xxxxxxxxxxxxxxxxxxxx"); } }',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'go',
    alias: 'golang',
    info: { name: 'go', file_extension: '.go' },
    hello: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello, world")\n}',
    readLine: [
      'package main',
      '',
      'import (',
      '\t"bufio"',
      '\t"fmt"',
      '\t"os"',
      '\t"strings"',
      ')',
      '',
      'func main() {',
      '\tfmt.Print("name? ")',
      '\tname, _ := bufio.NewReader(os.Stdin).ReadString(\'\\n\')',
      '\tfmt.Println("hello " + strings.TrimSpace(name))',
      '}',
    ].join('\n'),
    syntaxError: { code: 'package main\n\nfunc main() {\n\tx := \n}', ename: 'CompileError', stderr: /syntax error/ },
    runtimeError: { code: 'package main\n\nfunc main() {\n\tpanic("boom")\n}', ename: 'RuntimeError', stderr: /panic: boom[\s\S]*status 2/ },
    endless: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("started")\n\tn := 0\n\tfor {\n\t\tn++\n\t}\n}',
    bigOutput: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfor i := 0; i < 10000; i++ {\n\t\tfmt.Printf("line %d xxxxxxxxxxxxxxxxxxxx\\n", i)\n\t}\n}',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'rust',
    alias: 'rs',
    info: { name: 'rust', file_extension: '.rs' },
    hello: 'fn main() {\n    println!("hello, world");\n}',
    readLine: [
      'use std::io::{self, BufRead, Write};',
      'fn main() {',
      '    print!("name? ");',
      '    io::stdout().flush().unwrap();',
      '    let mut name = String::new();',
      '    io::stdin().lock().read_line(&mut name).unwrap();',
      '    println!("hello {}", name.trim());',
      '}',
    ].join('\n'),
    syntaxError: { code: 'fn main() {\n    let x = ;\n}', ename: 'CompileError', stderr: /error: expected expression/ },
    runtimeError: { code: 'fn main() {\n    panic!("boom");\n}', ename: 'RuntimeError', stderr: /boom[\s\S]*status 101/ },
    endless: 'fn main() {\n    println!("started");\n    loop {}\n}',
    bigOutput: 'fn main() {\n    for i in 0..10000 {\n        println!("line {} xxxxxxxxxxxxxxxxxxxx", i);\n    }\n}',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'ruby',
    alias: 'rb',
    info: { name: 'ruby', file_extension: '.rb' },
    hello: 'puts "hello, world"',
    readLine: 'print "name? "\nname = gets.chomp\nputs "hello #{name}"',
    syntaxError: { code: 'puts(', ename: 'SyntaxError', stderr: /syntax error/ },
    runtimeError: { code: 'raise ArgumentError, "boom"', ename: 'RuntimeError', stderr: /boom \(ArgumentError\)/ },
    endless: 'puts "started"\nn = 0\nloop { n += 1 }',
    bigOutput: '10000.times { |i| puts "line #{i} #{"x" * 20}" }',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'php',
    info: { name: 'php', file_extension: '.php' },
    hello: 'echo "hello, world\\n";',
    readLine: 'echo "name? ";\n$name = trim(fgets(STDIN));\necho "hello $name\\n";',
    syntaxError: { code: 'echo "x" echo "y";', ename: 'SyntaxError', stderr: /Parse error/ },
    runtimeError: { code: 'throw new RuntimeException("boom");', ename: 'RuntimeError', stderr: /RuntimeException: boom[\s\S]*status 255/ },
    endless: 'echo "started\\n";\n$n = 0;\nwhile (true) { $n++; }',
    bigOutput: 'for ($i = 0; $i < 10000; $i++) echo "line $i xxxxxxxxxxxxxxxxxxxx\\n";',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'perl',
    alias: 'pl',
    info: { name: 'perl', file_extension: '.pl' },
    hello: 'print "hello, world\\n";',
    readLine: 'print "name? ";\nmy $name = <STDIN>;\nchomp $name;\nprint "hello $name\\n";',
    syntaxError: { code: 'print "x" print "y";', ename: 'SyntaxError', stderr: /syntax error/ },
    runtimeError: { code: 'die "boom\\n";', ename: 'RuntimeError', stderr: /boom[\s\S]*status 255/ },
    endless: 'print "started\\n";\nmy $n = 0;\nwhile (1) { $n++ }',
    bigOutput: 'print "line $_ xxxxxxxxxxxxxxxxxxxx\\n" for 1 .. 10000;',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'lua',
    info: { name: 'lua', file_extension: '.lua' },
    hello: 'print("hello, world")',
    readLine: 'io.write("name? ")\nlocal name = io.read("l")\nprint("hello " .. name)',
    syntaxError: { code: 'print("x"', ename: 'SyntaxError', stderr: /expected near <eof>/ },
    runtimeError: { code: 'error("boom")', ename: 'RuntimeError', stderr: /boom[\s\S]*status 1/ },
    endless: 'print("started")\nlocal n = 0\nwhile true do n = n + 1 end',
    bigOutput: 'for i = 1, 10000 do print("line " .. i .. " xxxxxxxxxxxxxxxxxxxx") end',
    interruptEname: RUNNER_INTERRUPT,
  },
  {
    lang: 'r',
    alias: 'R',
    info: { name: 'R', file_extension: '.r' },
    hello: 'cat("hello, world\\n")',
    readLine: 'name <- readline("name? ")\ncat(paste0("hello ", name, "\\n"))',
    syntaxError: { code: 'x <- (1 + ', ename: /ERROR|Error/, stderr: /unexpected end of input/ },
    runtimeError: { code: 'stop("boom")', ename: /ERROR|Error/, stderr: /boom/ },
    endless: 'cat("started\\n")\nn <- 0\nwhile (TRUE) n <- n + 1',
    bigOutput: 'for (i in 1:10000) cat("line", i, "xxxxxxxxxxxxxxxxxxxx\\n")',
    // IRkernel answers an interrupted cell with an execute_reply whose status is not ok, and no error message.
    interruptEname: null,
    state: { set: 'counter <- 41', get: 'cat(counter + 1, "\\n", sep = "")', stdout: '42\n' },
  },
];
