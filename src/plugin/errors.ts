/** Codes of {@link SessionError}; match on `code`, never on `message`. */
export type SessionErrorCode =
  /** The store did not answer (down, timed out, queue full): HTTP 503. */
  | 'SESSION_STORE_UNAVAILABLE'
  /** The session is larger than the store's item limit; the stored one is unchanged: HTTP 500. */
  | 'SESSION_TOO_LARGE'
  /** Other processes kept changing the session (saves within one process queue); this save gave up: HTTP 503. */
  | 'SESSION_CONFLICT'
  /** The stored record is not a session this plugin wrote: HTTP 500. */
  | 'SESSION_CORRUPT'
  /** The session data cannot be stored as JSON (nested too deeply, circular, a BigInt); nothing was written: HTTP 500. */
  | 'SESSION_INVALID_DATA'

const STATUS: Record<SessionErrorCode, number> = {
  SESSION_STORE_UNAVAILABLE: 503,
  SESSION_TOO_LARGE: 500,
  SESSION_CONFLICT: 503,
  SESSION_CORRUPT: 500,
  SESSION_INVALID_DATA: 500
}

/**
 * What a request fails with when its session cannot be loaded or saved.
 * `statusCode` is what Fastify's error handler answers with; `cause` is the
 * store's error. The message is generic, since it reaches the client in the
 * response body: never the session id, a key, a server address or an `MC_*`
 * code (those are logged, and kept in `cause`).
 */
export class SessionError extends Error {
  /** Stable code. */
  readonly code: SessionErrorCode
  /** HTTP status for the response. */
  readonly statusCode: number

  constructor (code: SessionErrorCode, message: string, cause?: unknown) {
    super(`fastify-memcached-session: ${message}`, cause === undefined ? undefined : { cause })
    this.name = 'SessionError'
    this.code = code
    this.statusCode = STATUS[code]
  }
}

/**
 * Maps a store rejection to the error the request fails with. `action` is
 * one of the plugin's own verbs (`load`, `save`, …), never input.
 */
export function storeError (error: unknown, action: string): SessionError {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined
  if (code === 'MC_TOO_LARGE') {
    return new SessionError('SESSION_TOO_LARGE', `session too large to ${action}; the stored session was left unchanged`, error)
  }
  return new SessionError('SESSION_STORE_UNAVAILABLE', `session store unavailable, could not ${action} the session`, error)
}
