import { setData } from './record.js'
import { DELETED, data, isNew, markChanged, recordChange, type SessionState } from './state.js'

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

/** Hides the per-request state from the public surface of {@link Session}. */
export const STATE: unique symbol = Symbol('fastify-memcached-session.state')

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
    return this.state.maxAge ?? this.state.ops.defaultMaxAge
  }

  set maxAge (seconds: number | undefined) {
    if (seconds !== undefined && !(Number.isSafeInteger(seconds) && seconds > 0)) {
      throw new TypeError(`fastify-memcached-session: cookie.maxAge must be a positive integer number of seconds or undefined, got ${String(seconds)}`)
    }
    this.state.maxAge = seconds
    this.state.maxAgeSet = true
    markChanged(this.state)
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
  #cookie: SessionCookie | undefined

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
    return state.id ?? state.ops.assignId(state)
  }

  /** `true` when the session was not in the store when the request began (or was regenerated or destroyed since). */
  get isNew (): boolean {
    return isNew(this[STATE])
  }

  /** Per-session cookie settings. */
  get cookie (): SessionCookie {
    this.#cookie ??= new SessionCookie(this[STATE])
    return this.#cookie
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
    recordChange(state, key as string, value)
  }

  /** Removes `key` (saved at the end of the request). */
  delete<K extends keyof SessionData> (key: K): void {
    const state = this[STATE]
    delete data(state)[key as string]
    recordChange(state, key as string, DELETED)
  }

  /**
   * Moves the data to a new id and deletes the old record now. Call it on
   * login, so an id planted before login is worthless after it. The new
   * session counts its `absoluteTtl` from now. If the old record is already
   * gone (destroyed by a logout, or expired, since this request loaded it),
   * the new session starts empty and the response clears the cookie: data is
   * never copied from a record that no longer exists.
   */
  async regenerate (): Promise<void> {
    await this[STATE].ops.regenerate(this[STATE])
  }

  /**
   * Deletes the session from the store now and clears the cookie in the
   * response: a replayed cookie finds nothing. The object is then an empty
   * new session; anything set afterwards starts one under a new id.
   */
  async destroy (): Promise<void> {
    await this[STATE].ops.destroy(this[STATE])
  }

  /** Replaces the data with what the store holds now, dropping unsaved changes. */
  async reload (): Promise<void> {
    await this[STATE].ops.reload(this[STATE])
  }

  /** Writes the session now, even if unchanged, instead of at the end of the request. */
  async save (): Promise<void> {
    await this[STATE].ops.save(this[STATE])
  }

  /** Renews the idle timeout at the end of the request even when `rolling` is off. */
  touch (): void {
    this[STATE].touchRequested = true
  }
}
