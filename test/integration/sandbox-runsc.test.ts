/**
 * The sandbox of issue #6 under gVisor (runsc, registered by scripts/host-setup.sh): the same attacks as
 * under runc (sandbox-suite.ts), none of them skipped: a host without runsc fails here.
 */
import { sandboxSuite } from './sandbox-suite.js';

sandboxSuite('runsc');
