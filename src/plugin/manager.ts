import { Buffer } from 'node:buffer'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import { SessionCookies, idHash, type CookieId, type CookieRejection } from './cookie.js'
import { loadChannel, traceInstant, traceSettle, traceStart, type LoadOutcome, type SessionLoadTrace } from './diagnostics.js'
import type { SessionConfig } from './options.js'
import { decodeRecord, encodeRecord } from './record.js'
import { ResponseHeaders } from './response.js'
import { Session } from './session.js'
import {
  data, isStored, isClosedTo, markClosed, markDiscarded, markEmpty, markLoaded, markMoved, markReloaded, markUnchanged, newState, nowSeconds,
  type SessionOps, type SessionState
} from './state.js'
import type { SessionStore, StoredRecord } from './stores/store.js'
import { SessionWriter } from './writer.js'

/** ms between two warnings about forged cookies. */
const FORGED_WARNING_INTERVAL = 1000
const LOG = 'fastify-memcached-session: '

/**
 * Loads and saves sessions for one plugin registration: turns requests into
 * the transitions of `state.ts` and the store calls of {@link SessionWriter}.
 */
export class SessionManager implements SessionOps {
  readonly config: SessionConfig
  private readonly store: SessionStore
  private readonly writer: SessionWriter
  private readonly cookies: SessionCookies
  private readonly headers: ResponseHeaders
  /**
   * A renewal can move a record's expiry. Not with `absoluteTtl` <= `ttl`:
   * then every write already sets it to the end of the absolute lifetime,
   * and a renewal would only set the same instant again, so none is sent.
   */
  private readonly renews: boolean
  /** Load and renew in one round trip, when the store can and every response renews anyway. */
  private readonly renewOnLoad: boolean
  private lastForgedWarning = -Infinity
  private forgedSinceWarning = 0

  constructor (config: SessionConfig, store: SessionStore) {
    this.config = config
    this.store = store
    this.writer = new SessionWriter(config, store)
    this.cookies = new SessionCookies(config)
    this.headers = new ResponseHeaders(config, this.cookies)
    this.renews = config.absoluteTtl > config.ttl
    this.renewOnLoad = this.renews && config.rolling && typeof store.getAndTouch === 'function'
  }

  get defaultMaxAge (): number | undefined {
    return this.config.cookie.maxAge
  }

  /** A new, empty session; costs no crypto and no I/O. */
  fresh (log: FastifyBaseLogger): Session {
    return new Session(newState(this, log, nowSeconds()))
  }

  /**
   * Sets `request.session` from the cookie value. Returns a promise only when
   * the store must be asked (a well-signed cookie).
   */
  open (request: FastifyRequest, value: string): Promise<void> | undefined {
    const verified = this.cookies.verify(value)
    if (typeof verified === 'string') {
      this.rejected(request.log, verified, value)
      request.session = this.fresh(request.log)
      return undefined
    }
    return this.load(request, verified)
  }

  /** Logs and traces a refused cookie; the id it claims is hashed, never logged. */
  private rejected (log: FastifyBaseLogger, reason: CookieRejection, value: string): void {
    // A malformed value is most often another app's cookie of the same name:
    // routine. A well-formed one that no secret signed was tampered with, or
    // signed by a secret since retired: worth a warning.
    const sessionHash = reason === 'forged' ? idHash(value.slice(0, value.lastIndexOf('.'))) : undefined
    if (sessionHash === undefined) log.debug(`${LOG}malformed session cookie ignored; starting a new session`)
    else this.forgedCookie(log, sessionHash)
    if (loadChannel.hasSubscribers) traceInstant({ sessionHash, reload: false, outcome: 'rejected', bytes: 0 })
  }

  /**
   * At most one warning per second for forged cookies, counting the ones it
   * folded: an attacker sending them by the thousand must not flood the logs.
   */
  private forgedCookie (log: FastifyBaseLogger, sessionHash: string): void {
    const message = `${LOG}session cookie with an invalid signature (tampered with, or signed by a secret no longer configured); starting a new session`
    const now = Date.now()
    if (now - this.lastForgedWarning < FORGED_WARNING_INTERVAL) {
      this.forgedSinceWarning++
      log.debug({ session: sessionHash }, message)
      return
    }
    const suppressed = this.forgedSinceWarning
    this.lastForgedWarning = now
    this.forgedSinceWarning = 0
    if (suppressed === 0) log.warn({ session: sessionHash }, message)
    else log.warn({ session: sessionHash, suppressed }, `${message} (${suppressed} more since the last warning, logged at debug)`)
  }

  private load (request: FastifyRequest, cookie: CookieId): Promise<void> {
    // The load's outcome sets the creation time: the record's, or now for an empty session.
    const state = newState(this, request.log, 0)
    this.writer.useCookieId(state, cookie)
    if (!loadChannel.hasSubscribers) return this.loadInto(request, state, cookie, undefined)
    const trace: SessionLoadTrace = { sessionHash: this.writer.hashOf(state), reload: false, outcome: undefined, bytes: 0 }
    traceStart(loadChannel, trace)
    return traceSettle(loadChannel, trace, this.loadInto(request, state, cookie, trace))
  }

  private async loadInto (request: FastifyRequest, state: SessionState, cookie: CookieId, trace: SessionLoadTrace | undefined): Promise<void> {
    const key = this.writer.keyOf(state)
    // With `rolling`, the response would `touch` the record anyway: renew it
    // with the load, in the same round trip.
    const pending = this.renewOnLoad && this.store.getAndTouch !== undefined
      ? this.store.getAndTouch(key, this.config.ttl)
      : this.store.get(key)
    const found = await this.writer.call(state, 'load', pending)
    const now = nowSeconds()
    const outcome = this.adopt(state, found, trace, now)
    if (found !== undefined && outcome === 'hit') {
      // Near the end of its absolute lifetime the record needs a shorter TTL
      // than the idle one it was just given: the response sets it.
      markLoaded(state, found.value, found.version, cookie.renew, this.renewOnLoad && this.writer.ttlFor(state.createdAt, now) === this.config.ttl)
    } else {
      if (outcome === 'expired') await this.discard(state, key)
      if (outcome !== 'invalid') {
        const why = outcome === 'miss' ? 'not in the store (idle-expired or destroyed)' : 'older than absoluteTtl'
        state.log.debug({ session: this.writer.hashOf(state) }, `${LOG}session ${why}; starting a new session`)
      }
      // Unknown, expired or foreign: never adopt an id the store lacks.
      markEmpty(state, 'lost')
    }
    request.session = new Session(state)
  }

  /**
   * Deletes a record found past `absoluteTtl`. A renewing load has just given
   * it a fresh idle TTL, so without this anyone replaying the dead cookie
   * would keep the session's data in memcached forever. Best effort: the
   * request goes on as a new session either way.
   */
  private async discard (state: SessionState, key: string): Promise<void> {
    try {
      await this.store.delete(key)
    } catch (error) {
      state.log.warn({ err: error, session: this.writer.hashOf(state) }, `${LOG}could not delete a session past absoluteTtl; it expires from the store by its idle ttl`)
    }
  }

  /** Draws the random id of a new session. */
  assignId (state: SessionState): string {
    return this.writer.assignId(state)
  }

  /**
   * `request.session.regenerate()`. The data moves only if the delete of the
   * old record found it, and it is still within `absoluteTtl`: a record a
   * logout (or expiry) removed after this request loaded it is never copied
   * under a new id.
   */
  async regenerate (state: SessionState): Promise<void> {
    if (isStored(state)) {
      // Parsed first: a corrupt record fails before anything is deleted.
      data(state)
      const deleted = await this.removeOrForget(state, 'regenerate')
      if (!deleted || this.expired(state.createdAt)) {
        state.log.info({ session: this.writer.hashOf(state) }, `${LOG}session destroyed or expired before regenerate(); the new session starts empty`)
        markEmpty(state, 'replaced')
        return
      }
      state.log.debug({ session: this.writer.hashOf(state) }, `${LOG}session regenerated; the old id is deleted`)
    }
    markMoved(state, this.config.saveUninitialized)
  }

  /** `request.session.destroy()`. */
  async destroy (state: SessionState): Promise<void> {
    if (isStored(state)) {
      await this.removeOrForget(state, 'destroy')
      state.log.debug({ session: this.writer.hashOf(state) }, `${LOG}session destroyed`)
    }
    markEmpty(state, 'replaced')
  }

  /**
   * Deletes the record of `regenerate()` or `destroy()`. If the store fails,
   * the session still leaves its id (empty, and the response clears the
   * cookie) before the error goes to the handler: one that catches it and
   * goes on, say logging the user in after a failed `regenerate()`, must
   * never write to the old id, which may be one an attacker planted.
   */
  private async removeOrForget (state: SessionState, action: 'regenerate' | 'destroy'): Promise<boolean> {
    try {
      return await this.writer.remove(state, action)
    } catch (error) {
      markEmpty(state, 'replaced')
      throw error
    }
  }

  /** `request.session.reload()`. */
  async reload (state: SessionState): Promise<void> {
    if (!isStored(state)) {
      markDiscarded(state)
      return
    }
    if (!loadChannel.hasSubscribers) return await this.reloadInto(state, undefined)
    const trace: SessionLoadTrace = { sessionHash: this.writer.hashOf(state), reload: true, outcome: undefined, bytes: 0 }
    traceStart(loadChannel, trace)
    await traceSettle(loadChannel, trace, this.reloadInto(state, trace))
  }

  private async reloadInto (state: SessionState, trace: SessionLoadTrace | undefined): Promise<void> {
    const found = await this.writer.call(state, 'reload', this.store.get(this.writer.keyOf(state)))
    if (found === undefined || this.adopt(state, found, trace, nowSeconds()) !== 'hit') markEmpty(state, 'lost')
    else markReloaded(state, found.value, found.version)
  }

  /** `request.session.save()`: writes now, changed or not. */
  async save (state: SessionState): Promise<void> {
    if (isStored(state)) await this.writer.traced(state, (trace) => this.writer.writeExisting(state, trace, undefined))
    else await this.writer.traced(state, (trace) => this.writer.writeNew(state, trace))
  }

  /**
   * The `onSend` work: write or touch as needed, then the cookie and
   * Cache-Control headers. Returns a promise only when the store must be called.
   */
  finish (state: SessionState, request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined {
    if (isClosedTo(state, reply.statusCode)) {
      // The error response of a failed store call (or a second onSend): no
      // store work and no cookie, but the response still stays out of the
      // caches it must not be in.
      this.headers.protect(state, request, reply)
      return undefined
    }
    let write: Promise<void> | undefined
    try {
      write = this.config.saveOnError || reply.statusCode < 500 ? this.pendingWrite(state) : undefined
    } catch (error) {
      this.failed(state, reply)
      return Promise.reject(error)
    }
    if (write === undefined) {
      this.respond(state, request, reply)
      return undefined
    }
    return this.afterWrite(write, state, request, reply)
  }

  private async afterWrite (write: Promise<void>, state: SessionState, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    try {
      await write
    } catch (error) {
      this.failed(state, reply)
      throw error
    }
    this.respond(state, request, reply)
  }

  /** The save failed: the response becomes the plugin's error, which no Cache-Control the route set for its own response covers. */
  private failed (state: SessionState, reply: FastifyReply): void {
    markClosed(state)
    reply.removeHeader('cache-control')
  }

  private respond (state: SessionState, request: FastifyRequest, reply: FastifyReply): void {
    this.headers.apply(state, request, reply)
    markClosed(state)
  }

  private pendingWrite (state: SessionState): Promise<void> | undefined {
    switch (state.phase) {
      case 'unsaved':
        return this.writer.traced(state, (trace) => this.writer.writeNew(state, trace))
      case 'fresh':
        // After destroy() nothing is written, even with saveUninitialized.
        if (!this.config.saveUninitialized || state.origin === 'replaced') return undefined
        return this.writer.traced(state, (trace) => this.writer.writeNew(state, trace))
      case 'changed': {
        const value = encodeRecord(state.createdAt, state.maxAge, data(state))
        if (value !== state.record) return this.writer.traced(state, (trace) => this.writer.writeExisting(state, trace, value))
        // Every change set a key back to what it was: like an untouched session.
        markUnchanged(state)
        return this.pendingRenewal(state)
      }
      case 'loaded':
      case 'saved':
        return this.pendingRenewal(state)
    }
  }

  private pendingRenewal (state: SessionState): Promise<void> | undefined {
    if (!this.renews || state.renewed || !(this.config.rolling || state.touchRequested)) return undefined
    return this.writer.traced(state, (trace) => this.writer.renew(state, trace))
  }

  /** Takes a loaded record's header when it is a live session record of ours. */
  private adopt (state: SessionState, found: StoredRecord | undefined, trace: SessionLoadTrace | undefined, now: number): LoadOutcome {
    const outcome = this.outcomeOf(state, found, now)
    if (trace !== undefined) {
      trace.outcome = outcome
      trace.bytes = found === undefined ? 0 : Buffer.byteLength(found.value)
    }
    return outcome
  }

  private outcomeOf (state: SessionState, found: StoredRecord | undefined, now: number): LoadOutcome {
    if (found === undefined) return 'miss'
    const record = decodeRecord(found.value)
    if (record === undefined) {
      state.log.warn({ session: this.writer.hashOf(state) }, `${LOG}ignoring a stored value that is not a session record`)
      return 'invalid'
    }
    if (this.expired(record.createdAt, now)) return 'expired'
    state.json = record.json
    state.data = undefined
    state.createdAt = record.createdAt
    state.maxAge = record.maxAge
    return 'hit'
  }

  /** The absolute lifetime of a session created at `createdAt` (Unix seconds) is over at `now`. */
  private expired (createdAt: number, now = nowSeconds()): boolean {
    return now - createdAt >= this.config.absoluteTtl
  }
}
