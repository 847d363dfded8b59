import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * SSRF guard for webhook URLs: fleetgate must not be made to POST to its own host, the local
 * network or a cloud metadata endpoint. Only globally routable unicast addresses pass, unless the
 * operator allows private ones (`--webhooks-allow-private-urls`). Checked when a subscription is
 * saved (the URL's host and what it resolves to) and again on every delivery, on the addresses
 * the connection actually uses (guardedLookup), so a name that later resolves elsewhere (DNS
 * rebinding) is refused too.
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  return ipaddr.process(address).range() === 'unicast';
}

export class UnsafeUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeUrlError';
  }
}

/** What is wrong with `url` as a webhook URL, or undefined when it is acceptable. */
export async function checkWebhookUrl(url: string, allowPrivate: boolean): Promise<string | undefined> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must start with https:// or http://';
  if (u.username !== '' || u.password !== '') return 'must not carry credentials; authenticate by the signature';
  if (u.hash !== '') return 'must not have a #fragment';
  if (allowPrivate) return undefined;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) {
    return isPublicAddress(host) ? undefined : `points to a private, loopback or link-local address (${host})`;
  }
  const addresses = await lookupAll(host).catch(() => undefined);
  // A name that does not resolve now may later: every delivery checks what it resolves to then.
  const refused = addresses?.find((a) => !isPublicAddress(a.address));
  return refused ? `resolves to a private, loopback or link-local address (${refused.address})` : undefined;
}

function lookupAll(host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) =>
    dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
  );
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `lookup` for http.request that refuses non-public addresses (unless allowed). */
export function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: { all?: boolean; family?: number }, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const usable = allowPrivate ? addresses : addresses.filter((a) => isPublicAddress(a.address));
      if (usable.length === 0) {
        return callback(
          new UnsafeUrlError(`${hostname} resolves only to private, loopback or link-local addresses`),
          [],
        );
      }
      if (options.all) return callback(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    });
  };
}
