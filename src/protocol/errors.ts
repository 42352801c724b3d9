/**
 * Stable error codes of {@link MemcachedError}. Each one has its own heading
 * in docs/client.md; match on `code`, never on `message`.
 */
export type MemcachedErrorCode =
  /** The key is empty, longer than 250 bytes of UTF-8, or holds whitespace or control characters. Nothing was sent. */
  | 'MC_INVALID_KEY'
  /** The value exceeds `maxValueSize` (nothing was sent), or the server answered `SERVER_ERROR object too large for cache`. */
  | 'MC_TOO_LARGE'
  /** No reply within `timeout` ms (or no connection within `connectTimeout` ms). */
  | 'MC_TIMEOUT'
  /** The connection was refused, reset or lost while the command was in flight. */
  | 'MC_CONNECTION'
  /** The server answered `SERVER_ERROR <message>`. */
  | 'MC_SERVER_ERROR'
  /** The server answered `ERROR` or `CLIENT_ERROR <message>`. */
  | 'MC_CLIENT_ERROR'
  /** The server sent bytes that are not a valid reply to the command in flight; the connection was reset. */
  | 'MC_PROTOCOL'
  /** The client was closed before the command was sent. */
  | 'MC_CLOSED'
  /** `maxQueue` commands to that server are already waiting for a reply. */
  | 'MC_QUEUE_FULL'
  /** Every server is ejected (or none was configured). */
  | 'MC_NO_SERVERS'
  /** With `proxy: true`, a command proxies do not serve (`flush`, `stats`, `gat`). Nothing was sent. */
  | 'MC_UNSUPPORTED'

/** Options of {@link MemcachedError}. */
export interface MemcachedErrorOptions {
  /** `host:port` of the server the command went to, when one was chosen. */
  server?: string
  /** The underlying error (a socket error, for instance). */
  cause?: unknown
}

/**
 * The one error class of the memcached client. A cache miss is never an error:
 * it resolves `undefined` (or `false` for conditional writes).
 */
export class MemcachedError extends Error {
  /** Stable, documented code. */
  readonly code: MemcachedErrorCode
  /** `host:port` of the server involved, if any. */
  readonly server: string | undefined

  constructor (code: MemcachedErrorCode, message: string, options: MemcachedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'MemcachedError'
    this.code = code
    this.server = options.server
  }
}

/** Whether `error` is a {@link MemcachedError}, optionally with the given code. */
export function isMemcachedError (error: unknown, code?: MemcachedErrorCode): error is MemcachedError {
  return error instanceof MemcachedError && (code === undefined || error.code === code)
}
