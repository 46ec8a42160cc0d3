/** The judge sandbox under runc, the default OCI runtime (the attacks are in judge-sandbox-suite.ts). */
import test from 'ava';
import { harness, judgeSandboxSuite } from './judge-sandbox-suite.js';

judgeSandboxSuite(test, harness('runc'));
