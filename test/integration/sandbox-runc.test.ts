/**
 * The sandbox of issue #6 under runc, Docker's default OCI runtime: see sandbox-suite.ts.
 */
import { sandboxSuite } from './sandbox-suite.js';

sandboxSuite('runc');
