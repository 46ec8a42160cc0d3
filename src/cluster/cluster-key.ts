/**
 * The cluster key: one secret every gateway and node agent of a cluster reads (POLYKERNEL_CLUSTER_KEY_FILE,
 * e.g. a Docker secret), from which one Curve25519 keypair is derived. The agent is the CurveZMQ server
 * with that keypair; a gateway is a client with the same keypair, and the agent's ZAP handler admits only
 * clients that prove they hold its secret (their public key is the cluster's). So a peer needs the file
 * to be let in, and one file is all there is to distribute and rotate.
 *
 * The file holds 32 random bytes as base64 (44 characters) or Z85 (40 characters), whitespace ignored:
 * `npm run cluster-key > cluster.key` or `head -c 32 /dev/urandom | base64 > cluster.key`.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z85Decode, z85Encode } from './z85.js';

export class ClusterKeyError extends Error {}

export interface ClusterKey {
  /** Z85, as libzmq's curveSecretKey/curvePublicKey/curveServerKey take them. */
  secretKey: string;
  publicKey: string;
  /** The raw public key, as the ZAP request carries the client's. */
  publicKeyBytes: Buffer;
}

/** PKCS#8 DER of an X25519 private key, less its last 32 bytes (the raw key). RFC 8410. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The X25519 public key of a raw 32-byte private key: what libsodium's crypto_scalarmult_base gives libzmq. */
export function curvePublicKey(secret: Buffer): Buffer {
  const privateKey = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return Buffer.from(spki.subarray(spki.length - 32));
}

/** The keypair of a key file's text; throws ClusterKeyError saying what is wrong. */
export function parseClusterKey(text: string, source = 'the cluster key'): ClusterKey {
  const compact = text.replace(/\s+/g, '');
  let secret: Buffer | undefined;
  if (compact.length === 40) secret = z85Decode(compact);
  else if (/^[A-Za-z0-9+/]{43}=$/.test(compact)) secret = Buffer.from(compact, 'base64');
  if (!secret || secret.length !== 32) {
    throw new ClusterKeyError(
      `${source} must hold 32 random bytes as base64 (44 characters) or Z85 (40 characters), got ${compact.length} characters; make one with \`npm run cluster-key\` or \`head -c 32 /dev/urandom | base64\``,
    );
  }
  // A key typed by hand or made of a repeated pattern is guessable: random bytes have ~28 distinct values.
  if (new Set(secret).size < 16) throw new ClusterKeyError(`${source} is too weak (too few distinct bytes); make a random one with \`npm run cluster-key\``);
  const publicKeyBytes = curvePublicKey(secret);
  return { secretKey: z85Encode(secret), publicKey: z85Encode(publicKeyBytes), publicKeyBytes };
}

export function readClusterKey(file: string): ClusterKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ClusterKeyError(`POLYKERNEL_CLUSTER_KEY_FILE ${file} cannot be read: ${(error as Error).message}`);
  }
  return parseClusterKey(text, `POLYKERNEL_CLUSTER_KEY_FILE ${file}`);
}
