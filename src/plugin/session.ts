import type { FastifyBaseLogger } from 'fastify'
import type { SessionManager } from './manager.js'
import { SessionError } from './errors.js'
import { parseData, setData, type RecordData } from './record.js'

/**
 * The shape of session data, empty until the app declares its keys by
 * declaration merging:
 *
 * ```ts
 * declare module 'fastify-memcached-session' {
 *   interface SessionData { userId: string; views: number }
 * }
 * ```
 *
 * Values must survive `JSON.stringify`: they are stored as JSON.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled by the app's declaration merging
export interface SessionData {}

/** Marks a key deleted in {@link SessionState.changes}. */
export const DELETED: unique symbol = Symbol('deleted')

/** Hides the per-request state from the public surface of {@link Session}. */
export const STATE: unique symbol = Symbol('fastify-memcached-session.state')

/** Everything the plugin tracks about one request's session. */
export interface SessionState {
  readonly manager: SessionManager
  readonly log: FastifyBaseLogger
  /** Undefined until read or saved: a fresh session draws no random bytes before. */
  id: string | undefined
  /** `prefix + sha256(id)`, cached once computed. */
  key: string | undefined
  /**
   * The stored record exactly as loaded, while nothing has been written
   * since: a "change" that encodes to the same bytes is not written again
   * (setting a key to the value it had, as @fastify/flash does on every read).
   */
  record: string | undefined
  /** Stored data not parsed yet (parsed on first access). */
  json: string | undefined
  data: RecordData | undefined
  /** This request's changes, key by key, re-applied on a CAS conflict. */
  changes: Map<string, unknown> | undefined
  /** Something must be written (data, maxAge, or a regenerated id). */
  dirty: boolean
  /** Unix seconds when the session was created. */
  createdAt: number
  maxAge: number | undefined
  maxAgeChanged: boolean
  /** A record exists under `key` (loaded, or written by this request). */
  stored: boolean
  /** CAS version of the record as loaded; undefined once it may be stale. */
  version: bigint | undefined
  isNew: boolean
  touch: boolean
  /** Written during this request: a touch would be redundant. */
  wrote: boolean
  /** The cookie was signed by an older secret. */
  renew: boolean
  /** The id was first written by this request: send the cookie. */
  issue: boolean
  /**
   * This request destroyed (or regenerated away) the session the browser's
   * cookie names: the response clears the cookie unless it issues a new one.
   */
  stale: boolean
  /** onSend already handled this session. */
  finished: boolean
  cookie: SessionCookie | undefined
}

/** `request.session.cookie`: per-session cookie settings. */
export class SessionCookie {
  private readonly state: SessionState

  constructor (state: SessionState) {
    this.state = state
  }

  /**
   * `Max-Age` of this session's cookie, seconds ("remember me"); `undefined`
   * for a cookie that ends with the browser. Defaults to the plugin's
   * `cookie.maxAge`. Setting it is stored with the session and re-issues the
   * cookie.
   */
  get maxAge (): number | undefined {
    return this.state.maxAge ?? this.state.manager.config.cookie.maxAge
  }

  set maxAge (seconds: number | undefined) {
    if (seconds !== undefined && !(Number.isSafeInteger(seconds) && seconds > 0)) {
      throw new TypeError(`fastify-memcached-session: cookie.maxAge must be a positive integer number of seconds or undefined, got ${String(seconds)}`)
    }
    this.state.maxAge = seconds
    this.state.maxAgeChanged = true
    this.state.dirty = true
  }
}

/**
 * `request.session`: the data of one browser session, loaded in `onRequest`
 * and saved in `onSend` only if it changed. Read and write it with
 * {@link Session.get} and {@link Session.set}; mutating an object returned by
 * `get` in place is not seen as a change, so `set` it again.
 */
export class Session {
  /** @internal */
  readonly [STATE]: SessionState

  constructor (state: SessionState) {
    this[STATE] = state
  }

  /**
   * The session id (43 base64url characters). A new session draws it on first
   * read; after {@link Session.regenerate} or {@link Session.destroy} it is a
   * different one. Keep it secret: it is the bearer credential.
   */
  get id (): string {
    const state = this[STATE]
    return state.id ?? state.manager.assignId(state)
  }

  /** `true` when the session was not in the store when the request began (or was regenerated or destroyed since). */
  get isNew (): boolean {
    return this[STATE].isNew
  }

  /** Per-session cookie settings. */
  get cookie (): SessionCookie {
    const state = this[STATE]
    state.cookie ??= new SessionCookie(state)
    return state.cookie
  }

  /** The value stored under `key`, or `undefined`. */
  get<K extends keyof SessionData> (key: K): SessionData[K] | undefined {
    const values = data(this[STATE])
    // Own keys only: never what the object inherits (`constructor`, `toString`).
    return (Object.hasOwn(values, key) ? values[key as string] : undefined) as SessionData[K] | undefined
  }

  /** Sets `key` (saved at the end of the request); `undefined` deletes it. */
  set<K extends keyof SessionData> (key: K, value: SessionData[K]): void {
    if (value === undefined) {
      this.delete(key)
      return
    }
    const state = this[STATE]
    setData(data(state), key as string, value)
    record(state, key as string, value)
  }

  /** Removes `key` (saved at the end of the request). */
  delete<K extends keyof SessionData> (key: K): void {
    const state = this[STATE]
    delete data(state)[key as string]
    record(state, key as string, DELETED)
  }

  /**
   * Moves the data to a new id and deletes the old record now. Call it on
   * login, so an id planted before login is worthless after it. The new
   * session counts its `absoluteTtl` from now.
   */
  async regenerate (): Promise<void> {
    await this[STATE].manager.regenerate(this[STATE])
  }

  /**
   * Deletes the session from the store now and clears the cookie in the
   * response: a replayed cookie finds nothing. The object is then an empty
   * new session; anything set afterwards starts one under a new id.
   */
  async destroy (): Promise<void> {
    await this[STATE].manager.destroy(this[STATE])
  }

  /** Replaces the data with what the store holds now, dropping unsaved changes. */
  async reload (): Promise<void> {
    await this[STATE].manager.reload(this[STATE])
  }

  /** Writes the session now, even if unchanged, instead of at the end of the request. */
  async save (): Promise<void> {
    await this[STATE].manager.save(this[STATE])
  }

  /** Renews the idle timeout at the end of the request even when `rolling` is off. */
  touch (): void {
    this[STATE].touch = true
  }
}

/** The parsed data, parsing the stored JSON on first access. */
export function data (state: SessionState): RecordData {
  if (state.data !== undefined) return state.data
  const parsed = state.json === undefined ? {} : parseData(state.json)
  if (parsed === undefined) throw new SessionError('SESSION_CORRUPT', 'the stored session is not valid JSON')
  state.json = undefined
  state.data = parsed
  return parsed
}

function record (state: SessionState, key: string, value: unknown): void {
  state.changes ??= new Map()
  state.changes.set(key, value)
  state.dirty = true
}
