/**
 * What the Judge0 integration tests share: a client that polls as Judge0's clients do (while status.id is
 * 1 or 2), A+B in every language, and the classic programs of a judge.
 */
import type { Answer } from '../helpers/http-client.js';

export type Call = (method: string, route: string, body?: unknown, headers?: Record<string, string>) => Promise<Answer>;

/** GET /submissions/:token until it is no longer In Queue or Processing. */
export async function poll(call: Call, token: string, query = '', timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await call('GET', `/submissions/${token}${query}`);
    if (answer.status !== 200) throw new Error(`GET /submissions/${token} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    if (answer.body.status?.id > 2 || (answer.body.status_id ?? 0) > 2) return answer.body;
    if (Date.now() > deadline) throw new Error(`submission ${token} not finished within ${timeoutMs} ms: ${JSON.stringify(answer.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A+B (two integers on stdin, their sum on stdout) by Judge0 language id. */
export const A_PLUS_B: Record<number, { name: string; source: string }> = {
  46: { name: 'bash', source: 'read a b\necho $((a + b))\n' },
  50: { name: 'c', source: '#include <stdio.h>\nint main(void) { long a, b; if (scanf("%ld %ld", &a, &b) != 2) return 1; printf("%ld\\n", a + b); return 0; }\n' },
  54: { name: 'cpp', source: '#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << "\\n"; }\n' },
  60: { name: 'go', source: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tvar a, b int\n\tfmt.Scan(&a, &b)\n\tfmt.Println(a + b)\n}\n' },
  62: { name: 'java', source: 'import java.util.Scanner;\n\npublic class Main {\n  public static void main(String[] args) {\n    Scanner in = new Scanner(System.in);\n    System.out.println(in.nextLong() + in.nextLong());\n  }\n}\n' },
  63: { name: 'javascript', source: "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n" },
  64: { name: 'lua', source: 'local a, b = io.read("n", "n")\nprint(math.tointeger(a + b) or (a + b))\n' },
  68: { name: 'php', source: '<?php\nfscanf(STDIN, "%d %d", $a, $b);\necho $a + $b, "\\n";\n' },
  71: { name: 'python3', source: 'a, b = map(int, input().split())\nprint(a + b)\n' },
  72: { name: 'ruby', source: 'a, b = gets.split.map(&:to_i)\nputs a + b\n' },
  73: { name: 'rust', source: 'use std::io::Read;\n\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();\n    println!("{}", v[0] + v[1]);\n}\n' },
  74: { name: 'typescript', source: "declare const require: any;\nconst [a, b]: number[] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n" },
  80: { name: 'r', source: 'x <- scan(file("stdin"), quiet = TRUE)\ncat(x[1] + x[2], "\\n", sep = "")\n' },
  85: { name: 'perl', source: 'my ($a, $b) = split " ", <STDIN>;\nprint $a + $b, "\\n";\n' },
};

export const C = 50;
export const PYTHON = 71;

export const C_PROGRAMS = {
  endless: 'int main(void) { volatile unsigned long n = 0; for (;;) n++; }\n',
  /** Touches 1 GB page by page: far past any memory limit here. */
  gigabyte: '#include <stdlib.h>\n#include <string.h>\nint main(void) { for (int i = 0; i < 1024; i++) { char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } return 0; }\n',
  nullDeref: 'int main(void) { volatile int *p = 0; *p = 42; return 0; }\n',
  divideByZero: '#include <stdio.h>\nint main(void) { volatile int zero = 0, seven = 7; printf("%d\\n", seven / zero); return 0; }\n',
  compileError: 'int main(void) { this is not C; }\n',
  /** Prints without end: past the output cap. */
  flood: '#include <stdio.h>\nint main(void) { for (;;) fputs("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n", stdout); }\n',
};
