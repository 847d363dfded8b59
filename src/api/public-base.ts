import type { Server } from 'node:http';
import type { Config } from '../config.js';
import { listenUrl } from '../lib/listen.js';
import type { PublicBase } from './problem-response.js';

/**
 * The base URL links and the OAuth2 issuer are built from: the configured public URL, else the
 * address this server listens on (known once it listens). Never the request's `Host` header.
 */
export function publicBase(config: Readonly<Config>, server: () => Server): PublicBase {
  if (config.publicUrl) return config.publicUrl.replace(/\/+$/, '');
  return () => {
    const address = server().address();
    return listenUrl('http', config.host, typeof address === 'object' && address ? address.port : config.port);
  };
}
