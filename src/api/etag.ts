import { problems } from '../domain/problems.js';

/** The ETag of a versioned resource (RFC 9110 §8.8.3): its version, quoted. */
export function etagOf(resource: { version: number }): string {
  return `"${resource.version}"`;
}

/** Parses `If-Match: "3"` into a version; undefined when absent, a problem when malformed. */
export function versionFromIfMatch(header: string | undefined): number | undefined {
  // RFC 9110 §13.1.1: `*` matches any current representation; the vehicle exists or it is 404.
  if (header === undefined || header.trim() === '*') return undefined;
  const m = /^(?:W\/)?"(\d{1,15})"$/.exec(header.trim());
  if (!m) {
    throw problems.invalidIfMatch();
  }
  return Number(m[1]);
}
