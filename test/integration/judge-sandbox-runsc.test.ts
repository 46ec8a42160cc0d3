/**
 * The judge sandbox under gVisor (runsc), where the engine has it registered (scripts/host-setup.sh):
 * the same attacks as under runc (judge-sandbox-suite.ts).
 */
import test from 'ava';
import { runtimeRegistered } from './sandbox-helpers.js';
import { harness, judgeSandboxSuite } from './judge-sandbox-suite.js';

// One test at a time: gVisor sandboxes are slow to start and to run on a small shared machine, and the
// limits are the same as under runc.
if (runtimeRegistered('runsc')) judgeSandboxSuite(test.serial, harness('runsc'));
else test.skip('runsc is not registered with the engine', () => undefined);
