#!/usr/bin/env node
// Prints a new cluster key (32 random bytes, base64) for POLYKERNEL_CLUSTER_KEY_FILE:
//   npm run --silent cluster-key > cluster.key && chmod 600 cluster.key
import { randomBytes } from 'node:crypto';
process.stdout.write(`${randomBytes(32).toString('base64')}\n`);
