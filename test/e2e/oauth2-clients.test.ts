import * as oidc from 'openid-client';
import { ClientCredentials } from 'simple-oauth2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.js';

// SPEC §5: the token endpoint speaks RFC 6749 (errors as `error` codes) and RFC 8414 metadata;
// API 401s carry RFC 6750 challenges. Proved with two OAuth2 client libraries integrators use,
// against a real server on port 0.
let h: Harness;
let client: { client_id: string; client_secret: string };

beforeAll(async () => {
  h = await Harness.start();
  client = await h.client('fleet-oauth', ['vehicles.ro', 'vehicle-commands']);
});
afterAll(async () => {
  await h?.close();
});

/** What a rejected promise threw, so its RFC members can be checked. */
async function thrown(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to fail');
}

describe('openid-client 6', () => {
  const discover = (secret: string, auth?: oidc.ClientAuth) =>
    oidc.discovery(new URL(h.url), client.client_id, secret, auth, {
      execute: [oidc.allowInsecureRequests],
      algorithm: 'oauth2',
    });

  it('discovers the token endpoint (RFC 8414), gets a token and calls the API with it', async () => {
    const config = await discover(client.client_secret);
    const metadata = config.serverMetadata();
    expect(metadata.issuer).toBe(h.url);
    expect(metadata.token_endpoint).toBe(`${h.url}/auth/oauth/token`);
    expect(metadata.grant_types_supported).toEqual(['client_credentials']);
    expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['vehicle-commands', 'vehicles', 'vehicles.ro']));

    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'vehicles.ro' });
    expect(tokens.token_type).toBe('bearer');
    expect(tokens.expires_in).toBe(900);
    expect(tokens.scope).toBe('vehicles.ro');
    const res = await oidc.fetchProtectedResource(config, tokens.access_token, new URL(`${h.url}/vehicles`), 'GET');
    expect(res.status).toBe(200);

    // Client authentication with HTTP Basic works too.
    const basic = await discover(client.client_secret, oidc.ClientSecretBasic(client.client_secret));
    expect((await oidc.clientCredentialsGrant(basic)).scope).toBe('vehicles.ro vehicle-commands');
  });

  it('a wrong client secret surfaces as invalid_client (form body: the error body; Basic: 401 + Basic challenge)', async () => {
    const post = await thrown(oidc.clientCredentialsGrant(await discover('wrong-secret')));
    expect(post).toBeInstanceOf(oidc.ResponseBodyError);
    expect(post.error).toBe('invalid_client');
    expect(post.status).toBe(401);
    expect(post.error_description).toMatch(/client id or client secret is wrong/);

    // RFC 6749 §5.2: a client that authenticated with the Authorization header gets 401 with the
    // challenge of its scheme; openid-client reports the challenge, and the body still says why.
    const basic = await discover('wrong-secret', oidc.ClientSecretBasic('wrong-secret'));
    const challenged = await thrown(oidc.clientCredentialsGrant(basic));
    expect(challenged).toBeInstanceOf(oidc.WWWAuthenticateChallengeError);
    expect(challenged.status).toBe(401);
    expect(challenged.cause).toEqual([{ scheme: 'basic', parameters: { realm: 'fleetgate' } }]);
    expect(await challenged.response.json()).toMatchObject({ error: 'invalid_client' });
  });

  it('a scope the client lacks, or an unknown one, surfaces as invalid_scope', async () => {
    const config = await discover(client.client_secret);
    for (const scope of ['vehicles', 'no-such-scope']) {
      const err = await thrown(oidc.clientCredentialsGrant(config, { scope }));
      expect(err).toBeInstanceOf(oidc.ResponseBodyError);
      expect(err.error).toBe('invalid_scope');
      expect(err.status).toBe(400);
    }
  });

  it('grant_type=password surfaces as unsupported_grant_type; an oversize parameter as invalid_request', async () => {
    const config = await discover(client.client_secret);
    const grant = await thrown(oidc.genericGrantRequest(config, 'password', { username: 'u', password: 'p' }));
    expect(grant).toBeInstanceOf(oidc.ResponseBodyError);
    expect(grant.error).toBe('unsupported_grant_type');
    expect(grant.status).toBe(400);
    const invalid = await thrown(oidc.clientCredentialsGrant(config, { scope: 'x'.repeat(300) }));
    expect(invalid).toBeInstanceOf(oidc.ResponseBodyError);
    expect(invalid.error).toBe('invalid_request');
  });

  it('API 401s carry an RFC 6750 Bearer challenge with error="invalid_token"', async () => {
    const config = await discover(client.client_secret);
    const err = await thrown(
      oidc.fetchProtectedResource(config, 'not-a-valid-token', new URL(`${h.url}/vehicles`), 'GET'),
    );
    expect(err).toBeInstanceOf(oidc.WWWAuthenticateChallengeError);
    expect(err.status).toBe(401);
    expect(err.cause[0]).toMatchObject({
      scheme: 'bearer',
      parameters: { realm: 'fleetgate', error: 'invalid_token' },
    });
    // 403: the token lacks the scope; the challenge names the one needed.
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'vehicles.ro' });
    const forbidden = await thrown(
      oidc.fetchProtectedResource(config, tokens.access_token, new URL(`${h.url}/vehicles`), 'POST'),
    );
    expect(forbidden.status).toBe(403);
    expect(forbidden.cause[0].parameters).toMatchObject({ error: 'insufficient_scope', scope: 'vehicles' });
  });
});

describe('simple-oauth2 5', () => {
  const credentials = (secret: string, authorizationMethod: 'header' | 'body' = 'header') =>
    new ClientCredentials({
      client: { id: client.client_id, secret },
      auth: { tokenHost: h.url, tokenPath: '/auth/oauth/token' },
      options: { authorizationMethod },
    });

  it('gets a token (HTTP Basic and form body) that the API accepts', async () => {
    for (const method of ['header', 'body'] as const) {
      const token = await credentials(client.client_secret, method).getToken({ scope: 'vehicles.ro' });
      expect(token.token).toMatchObject({ token_type: 'bearer', expires_in: 900, scope: 'vehicles.ro' });
      expect(token.expired()).toBe(false);
      const res = await h.request('GET', '/vehicles', { token: String(token.token.access_token) });
      expect(res.status).toBe(200);
    }
  });

  it('surfaces each error with its RFC 6749 code', async () => {
    const cases: Array<[string, () => Promise<unknown>, number, string]> = [
      ['wrong secret', () => credentials('wrong-secret').getToken({}), 401, 'invalid_client'],
      ['wrong secret, form body', () => credentials('wrong-secret', 'body').getToken({}), 401, 'invalid_client'],
      [
        'scope not granted',
        () => credentials(client.client_secret).getToken({ scope: 'vehicles' }),
        400,
        'invalid_scope',
      ],
      [
        'invalid parameter',
        () => credentials(client.client_secret).getToken({ scope: 'x'.repeat(300) }),
        400,
        'invalid_request',
      ],
    ];
    for (const [name, call, status, error] of cases) {
      const err = await thrown(call());
      expect(err.isBoom, name).toBe(true);
      expect(err.output.statusCode, name).toBe(status);
      expect(err.data.payload, name).toMatchObject({ error, error_description: expect.any(String), status });
    }
    const basicChallenge = await thrown(credentials('wrong-secret').getToken({}));
    expect(basicChallenge.data.res.headers['www-authenticate']).toBe('Basic realm="fleetgate"');
  });

  it('grant_type=password surfaces as unsupported_grant_type', async () => {
    // simple-oauth2's ResourceOwnerPassword grant against fleetgate's token endpoint.
    const { ResourceOwnerPassword } = await import('simple-oauth2');
    const password = new ResourceOwnerPassword({
      client: { id: client.client_id, secret: client.client_secret },
      auth: { tokenHost: h.url, tokenPath: '/auth/oauth/token' },
    });
    const err = await thrown(password.getToken({ username: 'someone', password: 'something' }));
    expect(err.output.statusCode).toBe(400);
    expect(err.data.payload).toMatchObject({ error: 'unsupported_grant_type' });
  });
});
