/**
 * Secrets must not reach the logs: a URL's `?token=` (the Jupyter form of auth, used by browsers for the
 * channels WebSocket) and an `Authorization: token|Bearer` value are replaced wherever they appear in a
 * log line, whatever field carries them (a path, an error message, a stack). Judge0's `?X-Auth-Token=` and
 * `?X-Auth-User=` are query tokens too.
 */
const QUERY_TOKEN = /([?&](?:token|access_token|api_key|apikey|x-auth-token|x-auth-user)=)[^&#\s"'\\]*/gi;
const AUTH_VALUE = /\b((?:token|bearer)\s+)[A-Za-z0-9._~+/=-]{8,}/gi;

export function redactSecrets(text: string): string {
  return text.replace(QUERY_TOKEN, '$1[redacted]').replace(AUTH_VALUE, '$1[redacted]');
}
