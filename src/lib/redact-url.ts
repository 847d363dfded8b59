/** Query parameters that carry credentials: never logged, and refused in a request URL. */
export const CREDENTIAL_PARAMETER =
  /^(client_secret|password|passwd|secret|access_token|refresh_token|token|api_key|apikey|key|credentials?)$/i;

/** A request URL fit for a log line: the values of credential parameters are replaced. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url.slice(q + 1).split('&');
  let changed = false;
  const out = params.map((pair) => {
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    let name = rawName;
    try {
      name = decodeURIComponent(rawName.replaceAll('+', ' '));
    } catch {
      // A malformed escape: judge the name as written.
    }
    if (eq < 0 || !CREDENTIAL_PARAMETER.test(name)) return pair;
    changed = true;
    return `${rawName}=[REDACTED]`;
  });
  return changed ? `${url.slice(0, q)}?${out.join('&')}` : url;
}

/** The credential parameters a URL's query carries, by name. */
export function credentialParameters(url: string): string[] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  return [...new URLSearchParams(url.slice(q + 1)).keys()].filter((name) => CREDENTIAL_PARAMETER.test(name));
}
