import { describe, expect, it } from 'vitest';
import { deriveKey, hashSecret, keyedHash, SecretBox, verifyKeyedHash, verifySecret } from '../../src/lib/secrets.js';

describe('secrets', () => {
  const key = deriveKey('a-master-secret-that-is-long-enough-0123', 'unit-password');

  it('keyed hashes verify only with the right password and key, and are salted', () => {
    const h1 = keyedHash('correct-horse-battery', key);
    const h2 = keyedHash('correct-horse-battery', key);
    expect(h1).not.toBe(h2);
    expect(h1).not.toContain('correct-horse-battery');
    expect(verifyKeyedHash('correct-horse-battery', h1, key)).toBe(true);
    expect(verifyKeyedHash('correct-horse-batterY', h1, key)).toBe(false);
    expect(
      verifyKeyedHash(
        'correct-horse-battery',
        h1,
        deriveKey('another-master-secret-long-enough-012345', 'unit-password'),
      ),
    ).toBe(false);
    expect(verifyKeyedHash('x', 'hmac-sha256$garbage', key)).toBe(false);
    expect(verifyKeyedHash('x', 'scrypt$whatever', key)).toBe(false);
  });

  it('scrypt hashes verify and reject', async () => {
    const h = await hashSecret('client-secret');
    expect(await verifySecret('client-secret', h)).toBe(true);
    expect(await verifySecret('client-secreT', h)).toBe(false);
    expect(await verifySecret('client-secret', 'scrypt$16384$8$1$bad')).toBe(false);
  });

  it('purpose-bound keys differ', () => {
    const master = 'a-master-secret-that-is-long-enough-0123';
    expect(deriveKey(master, 'jwt-hs256').equals(deriveKey(master, 'secret-box'))).toBe(false);
  });

  it('SecretBox binds a ciphertext to its row and detects tampering', () => {
    const box = new SecretBox(deriveKey('a-master-secret-that-is-long-enough-0123', 'secret-box'));
    const sealed = box.seal('refresh-token-123', 'cred-1');
    expect(sealed).not.toContain('refresh-token-123');
    expect(box.open(sealed, 'cred-1')).toBe('refresh-token-123');
    expect(() => box.open(sealed, 'cred-2')).toThrow();
    const parts = sealed.split('.');
    parts[2] = Buffer.from('tampered').toString('base64url');
    expect(() => box.open(parts.join('.'), 'cred-1')).toThrow();
  });
});
