/** The one-shot snippet per language: what a judge submits, smallest form. */
export const HELLO: Record<string, string> = {
  python3: 'print("hello")',
  javascript: 'console.log("hello")',
  typescript: 'console.log("hello" as string)',
  bash: 'echo hello',
  c: '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }',
  cpp: '#include <iostream>\nint main() { std::cout << "hello" << std::endl; }',
  java: 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }',
  go: 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }',
  rust: 'fn main() { println!("hello"); }',
  ruby: 'puts "hello"',
  php: '<?php echo "hello\\n";',
  perl: 'print "hello\\n";',
  lua: 'print("hello")',
  r: 'cat("hello\\n")',
};
