/**
 * `fastify-memcached-session/connect-store`: our memcached client as a
 * connect-style session store, for apps that keep `@fastify/session` or
 * `express-session` and only want to change where sessions live.
 *
 * express-session builds `req.session` through methods of its own `Store`
 * base class (`createSession`, `load`, `regenerate`), so a store must inherit
 * from it: as connect-memcached and connect-redis do, the app passes that
 * class in and gets a store class derived from it. Without it the store
 * derives from `EventEmitter`, which is all `@fastify/session` needs.
 */
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { MemcachedClient, type ServerHealth } from '../protocol/client.js'

/** Options of a connect store. */
export interface ConnectStoreOptions {
  /** A client the app owns (and closes). Exclusive with `servers`. */
  client?: MemcachedClient
  /**
   * `'host:port'` or `'host:port:weight'` entries; the store creates its own
   * client and closes it in `close()`. Default `['127.0.0.1:11211']` when
   * `client` is not given.
   */
  servers?: string[]
  /**
   * Prepended to `sha256(sid)` to form the memcached key: memcached never
   * sees a session id. Default `'sess:'`. Printable ASCII without spaces,
   * at most 186 bytes.
   */
  prefix?: string
  /**
   * Lifetime in seconds of a session whose cookie has no expiry (a browser-
   * session cookie). Sessions whose cookie expires live until then. Default
   * 86_400 (1 day).
   */
  ttl?: number
}

/** The part of a session's cookie the store reads. */
export interface ConnectSessionCookie {
  /** When the cookie expires (a `Date`, or an ISO string once stored); `null` for a browser-session cookie. */
  expires?: Date | string | null
}

/**
 * A session as the middleware hands it over: its data, stored as JSON, and
 * its cookie, whose `expires` sets the memcached TTL. Declared without an
 * index signature so the middlewares' own session types fit it.
 */
export interface ConnectSessionData {
  cookie?: ConnectSessionCookie | null
}

/** A session as read back by the promise form of `get`: the JSON object that was stored. */
export type StoredConnectSession = ConnectSessionData & Record<string, unknown>

/** Node-style callback: `error` first, `null` on success. */
export type ConnectCallback<T = void> = (error: unknown, result?: T) => void

/**
 * The store methods, each in callback form (what the middleware calls) and
 * promise form (for the app's own use). A failed memcached call is a
 * `MemcachedError`; a miss is `null`, never an error.
 */
export interface ConnectStoreMethods {
  /** The client commands go through. */
  readonly client: MemcachedClient
  /** The session stored under `sid`, or `null` when missing, not JSON, or once its `cookie.expires` has passed (to the ms). */
  get (sid: string): Promise<StoredConnectSession | null>
  get (sid: string, callback: ConnectCallback<ConnectSessionData | null>): void
  /** Stores the session until its cookie expires (or for `ttl` seconds); an already expired one is deleted. The callback runs outside the promise chain. */
  set<Session extends ConnectSessionData> (sid: string, session: Session): Promise<void>
  set<Session extends ConnectSessionData> (sid: string, session: Session, callback: ConnectCallback): void
  /**
   * Moves the stored session's `cookie` (hence its expiry) and memcached TTL to
   * those of `session`, keeping the stored data: a `gets` and a `cas`, two round
   * trips. A missing, expired or concurrently changed session is left as it is.
   */
  touch<Session extends ConnectSessionData> (sid: string, session: Session): Promise<void>
  touch<Session extends ConnectSessionData> (sid: string, session: Session, callback: ConnectCallback): void
  /** Deletes the session; a missing one is not an error. */
  destroy (sid: string): Promise<void>
  destroy (sid: string, callback: ConnectCallback): void
  /** Each memcached server's health and round trip in ms (readiness); never rejects. */
  ping (): Promise<Record<string, ServerHealth>>
  /** Closes the client if this store created it (`servers`); a client passed in stays open. */
  close (): Promise<void>
}

/** A store class derived from `Base`; its instances are `Base` instances too. */
export type ConnectStoreClass<Instance extends object = EventEmitter> = new (options?: ConnectStoreOptions) => Instance & ConnectStoreMethods

const NAME = 'fastify-memcached-session'
const DEFAULT_TTL = 86_400
// memcached keys are at most 250 bytes; the hex sha256 takes 64 of them.
const MAX_PREFIX_BYTES = 250 - 64
// Printable ASCII without space: safe in a memcached key whatever follows.
const PREFIX = /^[\x21-\x7e]*$/

function checkPrefix (prefix: unknown): string {
  if (prefix === undefined) return 'sess:'
  if (typeof prefix !== 'string' || !PREFIX.test(prefix) || Buffer.byteLength(prefix) > MAX_PREFIX_BYTES) {
    throw new TypeError(`${NAME}: connect store prefix must be a string of at most ${MAX_PREFIX_BYTES} bytes of printable ASCII without spaces`)
  }
  return prefix
}

function checkTtl (ttl: unknown): number {
  if (ttl === undefined) return DEFAULT_TTL
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl <= 0) {
    throw new TypeError(`${NAME}: connect store ttl must be a positive integer number of seconds, got ${String(ttl)}`)
  }
  return ttl
}

/** ms since the epoch when the session's cookie expires; `undefined` for a browser-session cookie (or an unreadable date). */
function deadlineOf (session: ConnectSessionData): number | undefined {
  const expires = session.cookie?.expires
  if (expires === undefined || expires === null) return undefined
  const ms = new Date(expires).getTime()
  return Number.isFinite(ms) ? ms : undefined
}

/** Whether the session's cookie has expired, as express-session's MemoryStore decides it. */
function hasExpired (session: ConnectSessionData): boolean {
  const deadline = deadlineOf(session)
  return deadline !== undefined && deadline <= Date.now()
}

/**
 * The memcached TTL in seconds for the session: one second past its cookie's
 * expiry, else `fallback`; 0 when already expired. memcached's clock ticks in
 * whole seconds and may lag the real time by up to one, so an item given
 * `ceil(ms / 1000)` seconds could vanish before the cookie expires; the extra
 * second keeps it, and `get` enforces the exact deadline.
 */
function ttlOf (session: ConnectSessionData, fallback: number): number {
  const deadline = deadlineOf(session)
  if (deadline === undefined) return fallback
  const ms = deadline - Date.now()
  return ms > 0 ? Math.ceil(ms / 1000) + 1 : 0
}

function parse (raw: Buffer | undefined): StoredConnectSession | null {
  if (raw === undefined) return null
  let value: unknown
  try {
    value = JSON.parse(raw.toString('utf8'))
  } catch {
    // Not ours (or corrupted): a miss gives the user a fresh session
    // instead of failing every request that carries this cookie.
    return null
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as StoredConnectSession : null
}

/**
 * Calls back when given a callback (and returns nothing), else returns the
 * promise. The callback runs in a microtask of its own, outside the promise
 * chain: if it throws, that is an uncaught exception, as with any callback
 * API, not a rejection nobody handles while the request hangs. A microtask
 * rather than `process.nextTick` keeps the order callers saw before: code
 * that races its own callbacks (a Fastify handler that calls `reply.send()`
 * without returning `reply`) behaves as it did.
 */
function settle<T> (promise: Promise<T>, callback: ConnectCallback<T> | undefined): Promise<T> | undefined {
  if (callback === undefined) return promise
  promise.then(
    (result) => { queueMicrotask(() => { callback(null, result) }) },
    (error: unknown) => { queueMicrotask(() => { callback(error) }) }
  )
  return undefined
}

/**
 * Makes a connect-style session store class over {@link MemcachedClient}.
 *
 * ```ts
 * import session from 'express-session'
 * import { connectStore } from 'fastify-memcached-session/connect-store'
 *
 * const MemcachedSessionStore = connectStore(session.Store)
 * app.use(session({ secret, resave: false, saveUninitialized: false, store: new MemcachedSessionStore({ client }) }))
 * ```
 *
 * For `@fastify/session`, `connectStore()` without an argument is enough.
 * Sessions are stored as JSON under `prefix + sha256(sid)`, until the
 * cookie's expiry (TTLs past 30 days included) or for `ttl` seconds.
 *
 * @param Base - the middleware's `Store` class (`require('express-session').Store`); default `EventEmitter`
 */
export function connectStore (): ConnectStoreClass
export function connectStore<Base extends abstract new () => object> (Base: Base): ConnectStoreClass<InstanceType<Base>>
export function connectStore (Base: abstract new () => object = EventEmitter): ConnectStoreClass<object> {
  if (typeof Base !== 'function') throw new TypeError(`${NAME}: connectStore takes the session middleware's Store class (e.g. require('express-session').Store)`)
  // The base is only ever constructed without arguments, as express-session's
  // Store and EventEmitter expect; TypeScript cannot extend an abstract
  // constructor type, hence the cast.
  const Parent = Base as new () => object

  // Every member but the store interface (get, set, touch, destroy) and
  // ping, close and client is #private: the base classes call methods of
  // their own by name (express-session's load, createSession, regenerate),
  // and @fastify/session's Store sets `this.store`, so a member of the same
  // name here would break them.
  class MemcachedConnectStore extends Parent {
    readonly client: MemcachedClient
    readonly #ownsClient: boolean
    readonly #prefix: string
    readonly #ttl: number

    constructor (options: ConnectStoreOptions = {}) {
      super()
      if (options.client !== undefined && options.servers !== undefined) {
        throw new TypeError(`${NAME}: the connect store takes either client or servers, not both`)
      }
      this.#prefix = checkPrefix(options.prefix)
      this.#ttl = checkTtl(options.ttl)
      this.#ownsClient = options.client === undefined
      this.client = options.client ?? new MemcachedClient({ servers: options.servers ?? ['127.0.0.1:11211'] })
    }

    get (sid: string, callback?: ConnectCallback<StoredConnectSession | null>): Promise<StoredConnectSession | null> | undefined {
      return settle(this.#read(sid), callback)
    }

    set (sid: string, session: ConnectSessionData, callback?: ConnectCallback): Promise<void> | undefined {
      return settle(this.#write(sid, session), callback)
    }

    touch (sid: string, session: ConnectSessionData, callback?: ConnectCallback): Promise<void> | undefined {
      return settle(this.#renew(sid, session), callback)
    }

    destroy (sid: string, callback?: ConnectCallback): Promise<void> | undefined {
      return settle(this.#delete(sid), callback)
    }

    async ping (): Promise<Record<string, ServerHealth>> {
      return await this.client.ping()
    }

    async close (): Promise<void> {
      if (this.#ownsClient) await this.client.close()
    }

    #keyOf (sid: string): string {
      return this.#prefix + createHash('sha256').update(String(sid)).digest('hex')
    }

    async #read (sid: string): Promise<StoredConnectSession | null> {
      const session = parse(await this.client.get(this.#keyOf(sid)))
      // memcached keeps the item up to two seconds past the cookie's expiry.
      return session === null || hasExpired(session) ? null : session
    }

    async #write (sid: string, session: ConnectSessionData): Promise<void> {
      const ttl = ttlOf(session, this.#ttl)
      if (ttl <= 0) return await this.#delete(sid)
      await this.client.set(this.#keyOf(sid), JSON.stringify(session), { ttl })
    }

    /**
     * Moves the stored cookie's expiry along with the memcached TTL, as
     * MemoryStore does: `#read` checks the stored expiry, so renewing the TTL
     * alone would cut the session off at its old deadline. The data stays as
     * stored; a `cas` that finds the session changed or gone leaves it be
     * (the writer stored a fresh cookie, or the session was destroyed).
     */
    async #renew (sid: string, session: ConnectSessionData): Promise<void> {
      const ttl = ttlOf(session, this.#ttl)
      if (ttl <= 0) return await this.#delete(sid)
      const key = this.#keyOf(sid)
      const found = await this.client.gets(key)
      const stored = parse(found?.value)
      if (found === undefined || stored === null || hasExpired(stored)) return
      stored.cookie = session.cookie
      await this.client.cas(key, JSON.stringify(stored), found.cas, { ttl, flags: found.flags })
    }

    async #delete (sid: string): Promise<void> {
      await this.client.delete(this.#keyOf(sid))
    }
  }

  return MemcachedConnectStore as unknown as ConnectStoreClass<object>
}

export default connectStore
