/**
 * The judge sandbox under gVisor (runsc), where the engine has it registered (scripts/host-setup.sh):
 * the same attacks as under runc (judge-sandbox-suite.ts).
 */
import test from 'ava';
import { runtimeRegistered } from './sandbox-helpers.js';
import { harness, judgeSandboxSuite } from './judge-sandbox-suite.js';

if (runtimeRegistered('runsc')) judgeSandboxSuite(test, harness('runsc'));
else test('runsc is not registered with the engine: nothing to test', (t) => t.pass());
