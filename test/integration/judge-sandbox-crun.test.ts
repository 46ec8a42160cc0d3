/**
 * The judge sandbox under crun, where the engine has it registered (it is not by scripts/host-setup.sh:
 * Debian's crun 1.8 refuses these hosts' hybrid cgroups unless every controller is on cgroup v1; see the
 * README's judge sandbox section): the same attacks as under runc (judge-sandbox-suite.ts).
 */
import test from 'ava';
import { runtimeRegistered } from './sandbox-helpers.js';
import { harness, judgeSandboxSuite } from './judge-sandbox-suite.js';

if (runtimeRegistered('crun')) judgeSandboxSuite(test, harness('crun'));
else test.skip('crun is not registered with the engine', () => undefined);
