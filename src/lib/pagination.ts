import { problems } from '../domain/problems.js';

/** A page of a cursor-paginated list (SPEC §4). */
export interface Page<T> {
  items: T[];
  next_page_token: string | null;
}

/**
 * Page tokens are opaque to clients: base64url of `<kind>:<cursor>`. The kind stops a token of
 * one list being replayed against another.
 */
export function encodePageToken(kind: string, cursor: string): string {
  return Buffer.from(`${kind}:${cursor}`, 'utf8').toString('base64url');
}

export function decodePageToken(token: string, kind: string): string {
  const raw = /^[A-Za-z0-9_-]{1,400}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  if (!raw.startsWith(`${kind}:`) || raw.length === kind.length + 1) {
    throw problems.invalidPageToken();
  }
  return raw.slice(kind.length + 1);
}
