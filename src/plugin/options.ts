import type { MemcachedClient } from '../protocol/client.js'
import { keyProblem } from '../protocol/commands.js'
import type { SessionStore } from './stores/store.js'

/** Attributes of the session cookie. */
export interface SessionCookieOptions {
  /** `Path` attribute. Default `'/'`. */
  path?: string
  /** `Domain` attribute. Default: none (host-only cookie). */
  domain?: string
  /** `HttpOnly` attribute: scripts cannot read the cookie. Default `true`. */
  httpOnly?: boolean
  /**
   * `Secure` attribute. Default `'auto'`: set when the request came over
   * HTTPS (`request.protocol`, which honours `trustProxy`).
   */
  secure?: boolean | 'auto'
  /** `SameSite` attribute. Default `'lax'`. `'none'` requires `secure: true`. */
  sameSite?: 'lax' | 'strict' | 'none'
  /** `Partitioned` attribute (CHIPS). Default `false`. */
  partitioned?: boolean
  /**
   * `Max-Age`, seconds, for every session that does not set its own
   * `session.cookie.maxAge`. Default: none, the cookie ends with the browser.
   */
  maxAge?: number
}

/** Options of the `memcachedSession` plugin. */
export interface MemcachedSessionOptions {
  /**
   * Signs the cookie (HMAC-SHA256), at least 32 characters. An array rotates
   * secrets: the first signs, all verify, and a cookie signed by an older one
   * is re-issued signed by the first.
   */
  secret: string | string[]
  /**
   * Memcached servers, `'host:port'` or `'host:port:weight'`; the plugin
   * creates the client and closes it on `onClose`. Default
   * `['127.0.0.1:11211']`. Exclusive with `client` and `store`.
   */
  servers?: string[]
  /** A client the app owns (and closes). Exclusive with `servers` and `store`. */
  client?: MemcachedClient
  /** Any {@link SessionStore}, such as `MemoryStore`; the app owns (and closes) it. */
  store?: SessionStore
  /** Name of the session cookie. Default `'sid'`. */
  cookieName?: string
  /** Cookie attributes; see {@link SessionCookieOptions} for defaults. */
  cookie?: SessionCookieOptions
  /** Idle timeout, seconds, enforced by the store's expiry. Default 86_400 (1 day). */
  ttl?: number
  /** Longest life since creation, seconds, enforced on load. Default 604_800 (7 days). */
  absoluteTtl?: number
  /** Renew the idle timeout (a `touch`) on every response. Default `true`. */
  rolling?: boolean
  /** Store new sessions even when nothing was set in them. Default `false`. */
  saveUninitialized?: boolean
  /** Prepended to `sha256(id)` to form the store key. Default `'sess:'`. */
  prefix?: string
  /**
   * Copies of each session on distinct servers (the key's own and the next
   * ones along the ketama ring), so a session survives a server's death.
   * Default 1; at most the number of servers. Not with `store`.
   */
  replicas?: number
  /**
   * Save the session changes of a request whose response is an error
   * (status >= 500), as express-session and `@fastify/session` do. `false`:
   * such a request writes nothing at its end (no `add`, `cas` or `touch`;
   * under `rolling` the load has renewed the idle timeout already). Default `true`.
   */
  saveOnError?: boolean
  /**
   * Send `Cache-Control: private, no-store` on every response to a request
   * that carried a live session, unless the route set its own. Default
   * `true`: without it the browser's back/forward cache may show a
   * logged-in page again after logout. Responses that set or clear the
   * session cookie are kept out of shared caches either way.
   */
  cacheControl?: boolean
  /**
   * The `servers` are proxies (twemproxy, mcrouter) in front of memcached
   * pools: passed to the client the plugin creates (see the client's `proxy`
   * option). Default `false`. With `client`, set it on that client instead.
   */
  proxy?: boolean
}

/** Options after validation, with every default applied. */
export interface SessionConfig {
  secrets: string[]
  cookieName: string
  cookie: Required<Omit<SessionCookieOptions, 'domain' | 'maxAge'>> & Pick<SessionCookieOptions, 'domain' | 'maxAge'>
  ttl: number
  absoluteTtl: number
  rolling: boolean
  saveUninitialized: boolean
  prefix: string
  saveOnError: boolean
  cacheControl: boolean
}

const NAME = 'fastify-memcached-session'
const MIN_SECRET_LENGTH = 32
// RFC 6265 cookie-name is an RFC 7230 token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// Path and domain end up verbatim in Set-Cookie: no separators, no controls.
const ATTRIBUTE = /^[\x21-\x3a\x3c-\x7e]+$/
/** What the store key adds after the prefix: a hex sha256. */
const HASH_PLACEHOLDER = '0'.repeat(64)

function fail (message: string): never {
  throw new TypeError(`${NAME}: ${message}`)
}

function secrets (secret: unknown): string[] {
  const list = Array.isArray(secret) ? secret as unknown[] : [secret]
  if (secret === undefined) fail('the secret option is required (a string of at least 32 characters, or an array of them)')
  if (list.length === 0) fail('secret must not be an empty array')
  for (const item of list) {
    if (typeof item !== 'string' || item.length < MIN_SECRET_LENGTH) {
      fail(`every secret must be a string of at least ${MIN_SECRET_LENGTH} characters`)
    }
  }
  return list as string[]
}

function seconds (name: string, value: unknown, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    fail(`${name} must be a positive integer number of seconds, got ${String(value)}`)
  }
  return value
}

function flag (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') fail(`${name} must be a boolean, got ${String(value)}`)
  return value
}

// The client's own key rules, on the longest key the prefix will start: a
// prefix that registers never makes a write fail with MC_INVALID_KEY.
function prefix (value: unknown): string {
  if (value === undefined) return 'sess:'
  if (typeof value !== 'string') fail('prefix must be a string')
  const problem = keyProblem(value + HASH_PLACEHOLDER)
  if (problem !== undefined) fail(`prefix cannot start a memcached key (followed by the 64 hex characters of sha256(id)): ${problem}`)
  return value
}

function attribute (name: string, value: unknown, fallback: string | undefined): string | undefined {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !ATTRIBUTE.test(value)) fail(`cookie.${name} must be a non-empty string without spaces, ';' or control characters`)
  return value
}

function cookieOptions (cookie: SessionCookieOptions = {}): SessionConfig['cookie'] {
  if (typeof cookie !== 'object' || cookie === null) fail('cookie must be an object')
  const secure = cookie.secure ?? 'auto'
  if (secure !== 'auto' && typeof secure !== 'boolean') fail('cookie.secure must be true, false or \'auto\'')
  const sameSite = cookie.sameSite ?? 'lax'
  if (sameSite !== 'lax' && sameSite !== 'strict' && sameSite !== 'none') fail('cookie.sameSite must be \'lax\', \'strict\' or \'none\'')
  // Browsers drop a SameSite=None cookie that is not Secure.
  if (sameSite === 'none' && secure !== true) fail('cookie.sameSite \'none\' requires cookie.secure: true')
  return {
    path: attribute('path', cookie.path, '/') ?? '/',
    domain: attribute('domain', cookie.domain, undefined),
    httpOnly: flag('cookie.httpOnly', cookie.httpOnly, true),
    secure,
    sameSite,
    partitioned: flag('cookie.partitioned', cookie.partitioned, false),
    maxAge: seconds('cookie.maxAge', cookie.maxAge, undefined)
  }
}

function backend (options: MemcachedSessionOptions): void {
  const given = ['servers', 'client', 'store'].filter((key) => options[key as keyof MemcachedSessionOptions] !== undefined)
  if (given.length > 1) fail(`give only one of servers, client and store (got ${given.join(', ')})`)
  if (options.servers !== undefined && (!Array.isArray(options.servers) || options.servers.length === 0)) {
    fail('servers must be a non-empty array of \'host:port\' strings')
  }
  if (options.proxy !== undefined) {
    if (options.servers === undefined && (options.client !== undefined || options.store !== undefined)) {
      fail('proxy applies to servers; with client, create the MemcachedClient with proxy: true')
    }
    flag('proxy', options.proxy, false)
  }
  if (options.replicas !== undefined) {
    if (options.store !== undefined) fail('replicas applies to servers or client, not to a custom store')
    if (typeof options.replicas !== 'number' || !Number.isSafeInteger(options.replicas) || options.replicas < 1) {
      fail(`replicas must be a positive integer (copies of each session on distinct servers), got ${String(options.replicas)}`)
    }
  }
}

/** Validates the plugin options at register time and applies the defaults. */
export function resolveOptions (options: MemcachedSessionOptions): SessionConfig {
  if (typeof options !== 'object' || options === null) fail('options must be an object with at least a secret')
  backend(options)
  const cookieName = options.cookieName ?? 'sid'
  if (typeof cookieName !== 'string' || !TOKEN.test(cookieName)) fail('cookieName must be a valid cookie name (an RFC 7230 token)')
  return {
    secrets: secrets(options.secret),
    cookieName,
    cookie: cookieOptions(options.cookie),
    ttl: seconds('ttl', options.ttl, 86_400) ?? 86_400,
    absoluteTtl: seconds('absoluteTtl', options.absoluteTtl, 604_800) ?? 604_800,
    rolling: flag('rolling', options.rolling, true),
    saveUninitialized: flag('saveUninitialized', options.saveUninitialized, false),
    prefix: prefix(options.prefix),
    saveOnError: flag('saveOnError', options.saveOnError, true),
    cacheControl: flag('cacheControl', options.cacheControl, true)
  }
}
