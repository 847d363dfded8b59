import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  scrypt as scryptCb,
  timingSafeEqual,
} from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;

// N=2^14, r=8, p=1: OWASP's minimum for scrypt; ~15 ms per check on this machine's cores.
const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const HASH_PREFIX = 'scrypt$16384$8$1$';

/** Hashes a secret for storage: `scrypt$N$r$p$<salt b64>$<hash b64>`. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, 32, SCRYPT);
  return `${HASH_PREFIX}${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Constant-time check of a secret against a stored hash; false for any malformed hash. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  if (!stored.startsWith(HASH_PREFIX)) return false;
  const [saltB64, hashB64] = stored.slice(HASH_PREFIX.length).split('$');
  if (!saltB64 || !hashB64) return false;
  const expected = Buffer.from(hashB64, 'base64');
  if (expected.length !== 32) return false;
  const actual = await scrypt(secret, Buffer.from(saltB64, 'base64'), 32, SCRYPT);
  return timingSafeEqual(actual, expected);
}

const KEYED_PREFIX = 'hmac-sha256$';

/**
 * Hashes a device password with a server-side key (a pepper derived from the master secret)
 * instead of scrypt. Units log in on every reconnect, thousands at once after a broker restart:
 * scrypt there cost ~40 ms of CPU per login (15,000 units: 10 minutes, docs/performance.md).
 * A database leak alone does not let anyone test guesses without the key.
 */
export function keyedHash(secret: string, key: Buffer): string {
  const salt = randomBytes(16);
  const mac = createHmac('sha256', key).update(salt).update(secret, 'utf8').digest();
  return `${KEYED_PREFIX}${salt.toString('base64')}$${mac.toString('base64')}`;
}

/** Constant-time check against keyedHash's output; false for any other format. */
export function verifyKeyedHash(secret: string, stored: string, key: Buffer): boolean {
  if (!stored.startsWith(KEYED_PREFIX)) return false;
  const [saltB64, macB64] = stored.slice(KEYED_PREFIX.length).split('$');
  if (!saltB64 || !macB64) return false;
  const expected = Buffer.from(macB64, 'base64');
  if (expected.length !== 32) return false;
  const actual = createHmac('sha256', key).update(Buffer.from(saltB64, 'base64')).update(secret, 'utf8').digest();
  return timingSafeEqual(actual, expected);
}

/** A random secret for clients and units: 32 bytes, base64url. */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Derives a purpose-bound 32-byte key from the master secret (RFC 5869 HKDF-SHA256). */
export function deriveKey(masterSecret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', masterSecret, 'fleetgate', purpose, 32));
}

const BOX_VERSION = 'v1';

/**
 * Encrypts secrets at rest (third-party credentials) with AES-256-GCM. The associated data
 * binds a ciphertext to its row, so one row's secret cannot be pasted into another.
 */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte key');
  }

  seal(plaintext: string, associatedData: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(associatedData));
    const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [BOX_VERSION, iv.toString('base64url'), data.toString('base64url'), tag.toString('base64url')].join('.');
  }

  open(sealed: string, associatedData: string): string {
    const [version, iv, data, tag] = sealed.split('.');
    if (version !== BOX_VERSION || !iv || data === undefined || !tag) throw new Error('malformed sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(associatedData));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
  }
}
