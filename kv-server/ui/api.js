// The node's HTTP API, as the console calls it: same origin, the user's
// token if any, errors as the API's own JSON.

export const TOKEN_KEY = 'kv-console-token';
/** How long one long-poll is held by the node. */
export const LONG_POLL = '30s';
/** Entries per page of a list, and pages read at most for one table. */
const PAGE_LIMIT = 500;
const MAX_PAGES = 20;

/** An error answer of the API: `{"error": {"code", "message", "field"?}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {
      code: status ? `http_${status}` : 'unreachable',
      message: typeof body === 'string' && body ? body : `HTTP ${status}`,
    };
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.field = error.field;
  }

  toString() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

/** One request to this node; throws an ApiError for any answer but 2xx. */
export async function call(method, path, { body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { error: { code: 'unreachable', message: `the node did not answer: ${error.message}` } });
  }
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: kept as text for the error's message.
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, headers: response.headers };
}

export const enc = encodeURIComponent;
/**
 * A key's path: each segment encoded, the slashes kept. A key with an
 * empty, `.` or `..` segment is refused here, as the node refuses it: the
 * browser would otherwise resolve the dots and send the request to
 * another route.
 */
export function kvPath(key) {
  const segments = key.split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new ApiError(400, { error: { code: 'invalid_key', message: `key ${JSON.stringify(key)} has an empty, "." or ".." segment`, field: 'key' } });
  }
  return `/v1/kv/${segments.map(enc).join('/')}`;
}

/** Every page of a list, up to MAX_PAGES; `cursor` names an entry. */
export async function listAll(path, field, cursor, signal) {
  const items = [];
  let after = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const separator = path.includes('?') ? '&' : '?';
    const from = after === null ? '' : `&start_after=${enc(after)}`;
    const { data } = await call('GET', `${path}${separator}limit=${PAGE_LIMIT}${from}`, { signal });
    items.push(...data[field]);
    if (!data.more || data[field].length === 0) return { items, truncated: false };
    after = cursor(data[field][data[field].length - 1]);
  }
  return { items, truncated: true };
}
