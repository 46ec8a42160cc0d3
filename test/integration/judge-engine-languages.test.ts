/**
 * Every judged language on the real sandbox: its version read from its image, A+B accepted through its
 * image's commands, a submitted command-line argument passed as one word.
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

/** Each prints a+b of its stdin, then its first argument. */
const A_PLUS_B: Record<string, string> = {
  bash: 'read a b\necho $((a + b))\necho "$1"\n',
  c: '#include <stdio.h>\nint main(int c,char**v){long a,b;scanf("%ld %ld",&a,&b);printf("%ld\\n%s\\n",a+b,v[1]);return 0;}\n',
  cpp: '#include <iostream>\nint main(int c,char**v){long a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n"<<v[1]<<"\\n";}\n',
  go: 'package main\nimport ("fmt"; "os")\nfunc main() { var a, b int; fmt.Scan(&a, &b); fmt.Println(a + b); fmt.Println(os.Args[1]) }\n',
  java: 'import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner(System.in); System.out.println(s.nextLong() + s.nextLong()); System.out.println(x[0]); } }\n',
  javascript: 'const [a, b] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\nconsole.log(process.argv[2]);\n',
  lua: 'local a, b = io.read("n", "n")\nprint(math.floor(a + b))\nprint(arg[1])\n',
  perl: 'my ($a, $b) = split " ", <STDIN>;\nprint $a + $b, "\\n", $ARGV[0], "\\n";\n',
  php: '<?php\n[$a, $b] = array_map("intval", preg_split("/\\s+/", trim(fgets(STDIN))));\necho $a + $b, "\\n", $argv[1], "\\n";\n',
  python3: 'import sys\na, b = map(int, input().split())\nprint(a + b)\nprint(sys.argv[1])\n',
  r: 'x <- scan(file("stdin"), quiet = TRUE)\ncat(x[1] + x[2], "\\n", sep = "")\ncat(commandArgs(trailingOnly = TRUE)[1], "\\n", sep = "")\n',
  ruby: 'a, b = STDIN.read.split.map(&:to_i)\nputs a + b\nputs ARGV[0]\n',
  rust: 'use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect(); println!("{}", v[0] + v[1]); println!("{}", std::env::args().nth(1).unwrap()); }\n',
  typescript: 'const [a, b]: number[] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\nconsole.log(process.argv[2]);\n',
};

test.serial('every language lists a version read from its image', async (t) => {
  const languages = await fixture.engine.languages();
  t.log(languages.map((language) => `${language.name}: ${language.displayName}`).join('; '));
  for (const language of languages) t.regex(language.version, /^\d+\.\d+/, language.name);
});

for (const [lang, source] of Object.entries(A_PLUS_B)) {
  test.serial(`${lang}: A+B accepted, the argument "a b;c" one word`, async (t) => {
    const result = await fixture.engine.judge(fixture.submission(lang, source, [io('20 22\n', '42\na b;c'), io('1 -1\n', '0\na b;c')], { args: ['a b;c'] }));
    t.is(result.verdict, 'accepted', JSON.stringify({ compile: result.compile && String(result.compile.stdout) + String(result.compile.stderr), tests: result.tests.map((r) => [r.verdict, r.message, String(r.stdout), String(r.stderr).slice(0, 500)]) }));
  });
}
