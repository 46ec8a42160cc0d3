// Prints, as JSON, what a language image has installed that a program can use ([{name, version}]), from
// its arguments: `name=version` (the version as the tool itself reports it, e.g. gcc="$(gcc -dumpfullversion)")
// or `dpkg:<package>` (the installed Debian package's upstream version). A language image runs it when it
// is built: `node /opt/polykernel/packages-json.mjs ... > /usr/share/polykernel/packages.json`;
// scripts/build-images.mjs turns that file into the image's org.polykernel.packages label.
// An empty version or a package that is not installed fails the build rather than declare what is not there.
import { execFileSync } from 'node:child_process';

const packages = [];
for (const arg of process.argv.slice(2)) {
  let name;
  let version;
  if (arg.startsWith('dpkg:')) {
    name = arg.slice('dpkg:'.length);
    const full = execFileSync('dpkg-query', ['-W', '-f', '${db:Status-Abbrev} ${Version}', name], { encoding: 'utf8' });
    if (!full.startsWith('ii ')) throw new Error(`Debian package ${name} is not installed`);
    // 1:3.8-4 -> 3.8: no epoch, no Debian revision.
    version = full.slice(3).trim().replace(/^\d+:/, '').replace(/-[^-]*$/, '');
  } else {
    const at = arg.indexOf('=');
    name = at > 0 ? arg.slice(0, at) : '';
    version = at > 0 ? arg.slice(at + 1).trim() : '';
  }
  if (!name || !version) throw new Error(`packages-json: no name or version in ${JSON.stringify(arg)}`);
  packages.push({ name, version });
}
process.stdout.write(`${JSON.stringify(packages)}\n`);
