import { Buffer } from 'node:buffer'
import { createHash, randomBytes } from 'node:crypto'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import { SessionCookies, type CookieId, type CookieRejection } from './cookie.js'
import { loadChannel, saveChannel, traceInstant, traceSettle, traceStart, type SessionLoadTrace, type SessionSaveTrace } from './diagnostics.js'
import { SessionError, storeError } from './errors.js'
import type { SessionConfig } from './options.js'
import { decodeRecord, encodeRecord, parseData, setData } from './record.js'
import { DELETED, Session, data, type SessionState } from './session.js'
import type { SessionStore } from './stores/store.js'

// Each failed CAS means another request's write landed, so N concurrent
// writers of one session all finish within N attempts; this bound only stops
// a livelock.
const MAX_CAS_ATTEMPTS = 64
// An `add` that finds the key taken means a 256-bit id collided: retrying
// with new ids is for correctness, never expected to loop.
const MAX_ADD_ATTEMPTS = 3
/** ms between two warnings about forged cookies. */
const FORGED_WARNING_INTERVAL = 1000
const LOG = 'fastify-memcached-session: '

function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}

function sha256 (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** What a write does with its trace: fill in the outcome, bytes and attempts when there is one. */
type Write = (trace: SessionSaveTrace | undefined) => Promise<void>

/**
 * Loads and saves sessions for one plugin registration: the only place that
 * talks to the store, so the add / cas-merge / no-resurrection rules hold for
 * every store alike.
 */
export class SessionManager {
  readonly config: SessionConfig
  private readonly store: SessionStore
  private readonly cookies: SessionCookies
  private lastForgedWarning = -Infinity
  private forgedSinceWarning = 0

  constructor (config: SessionConfig, store: SessionStore) {
    this.config = config
    this.store = store
    this.cookies = new SessionCookies(config)
  }

  /** A new, empty session; costs no crypto and no I/O. */
  fresh (log: FastifyBaseLogger): Session {
    return new Session(newState(this, log))
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
    const sessionHash = reason === 'forged' ? sha256(value.slice(0, value.lastIndexOf('.'))) : undefined
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
    const state = newState(this, request.log)
    state.id = cookie.id
    if (!loadChannel.hasSubscribers) return this.loadInto(request, state, cookie, undefined)
    const trace: SessionLoadTrace = { sessionHash: this.hashOf(state), reload: false, outcome: undefined, bytes: 0 }
    traceStart(loadChannel, trace)
    return traceSettle(loadChannel, trace, this.loadInto(request, state, cookie, trace))
  }

  private async loadInto (request: FastifyRequest, state: SessionState, cookie: CookieId, trace: SessionLoadTrace | undefined): Promise<void> {
    const found = await this.call(state, 'load', this.store.get(this.keyOf(state)))
    const outcome = found === undefined ? 'miss' : this.adopt(state, found.value)
    if (trace !== undefined) {
      trace.outcome = outcome
      trace.bytes = found === undefined ? 0 : Buffer.byteLength(found.value)
    }
    if (found !== undefined && outcome === 'hit') {
      state.stored = true
      state.isNew = false
      state.version = found.version
      state.renew = cookie.renew
      state.record = found.value
    } else {
      if (outcome !== 'invalid') {
        const why = outcome === 'miss' ? 'not in the store (idle-expired or destroyed)' : 'older than absoluteTtl'
        state.log.debug({ session: this.hashOf(state) }, `${LOG}session ${why}; starting a new session`)
      }
      // Unknown, expired or foreign: never adopt an id the store lacks. The
      // cookie is left alone rather than cleared: clearing it could race with
      // a concurrent login's response and wipe the new cookie.
      state.id = undefined
      state.key = undefined
    }
    request.session = new Session(state)
  }

  /** Draws the random id of a new session. */
  assignId (state: SessionState): string {
    state.id = randomBytes(32).toString('base64url')
    state.key = undefined
    return state.id
  }

  /** `request.session.regenerate()`. */
  async regenerate (state: SessionState): Promise<void> {
    const old = state.stored ? this.keyOf(state) : undefined
    data(state)
    if (old !== undefined) {
      await this.remove(state, 'regenerate')
      state.log.debug({ session: this.hashOf(state) }, `${LOG}session regenerated; the old id is deleted`)
    }
    state.id = undefined
    state.key = undefined
    state.stored = false
    state.version = undefined
    state.isNew = true
    state.createdAt = nowSeconds()
    state.changes = undefined
    state.record = undefined
    state.dirty ||= Object.keys(data(state)).length > 0 || state.maxAge !== undefined
    // With nothing left to store, the response clears the old cookie.
    state.stale ||= old !== undefined
  }

  /** `request.session.destroy()`. */
  async destroy (state: SessionState): Promise<void> {
    if (state.stored) {
      await this.remove(state, 'destroy')
      state.log.debug({ session: this.hashOf(state) }, `${LOG}session destroyed`)
    }
    reset(state)
    state.stale = true
  }

  /** The delete of `destroy()` or `regenerate()`. */
  private async remove (state: SessionState, action: 'destroy' | 'regenerate'): Promise<void> {
    await this.traceWrite(state, async (trace) => {
      const deleted = await this.call(state, action, this.store.delete(this.keyOf(state)))
      if (trace === undefined) return
      trace.attempts = 1
      trace.outcome = !deleted ? 'gone' : action === 'destroy' ? 'destroyed' : 'regenerated'
    })
  }

  /** `request.session.reload()`. */
  async reload (state: SessionState): Promise<void> {
    if (!state.stored) {
      state.data = {}
      state.changes = undefined
      state.dirty = false
      return
    }
    if (!loadChannel.hasSubscribers) return await this.reloadInto(state, undefined)
    const trace: SessionLoadTrace = { sessionHash: this.hashOf(state), reload: true, outcome: undefined, bytes: 0 }
    traceStart(loadChannel, trace)
    await traceSettle(loadChannel, trace, this.reloadInto(state, trace))
  }

  private async reloadInto (state: SessionState, trace: SessionLoadTrace | undefined): Promise<void> {
    const found = await this.call(state, 'reload', this.store.get(this.keyOf(state)))
    state.changes = undefined
    state.dirty = false
    state.maxAgeChanged = false
    const outcome = found === undefined ? 'miss' : this.adopt(state, found.value)
    if (trace !== undefined) {
      trace.outcome = outcome
      trace.bytes = found === undefined ? 0 : Buffer.byteLength(found.value)
    }
    if (found === undefined || outcome !== 'hit') {
      reset(state)
      return
    }
    state.version = found.version
    state.record = found.value
  }

  /** `request.session.save()`: writes now, changed or not. */
  async save (state: SessionState): Promise<void> {
    if (state.stored) await this.traceWrite(state, (trace) => this.writeExisting(state, trace, undefined))
    else await this.traceWrite(state, (trace) => this.writeNew(state, trace))
  }

  /** Runs a write, traced on {@link saveChannel} when anyone subscribes. */
  private traceWrite (state: SessionState, write: Write): Promise<void> {
    if (!saveChannel.hasSubscribers) return write(undefined)
    const trace: SessionSaveTrace = { sessionHash: this.hashOf(state), outcome: undefined, bytes: 0, attempts: 0 }
    traceStart(saveChannel, trace)
    return traceSettle(saveChannel, trace, write(trace))
  }

  /**
   * The `onSend` work: write or touch as needed, then set the cookie. Returns
   * a promise only when the store must be called.
   */
  finish (state: SessionState, request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined {
    if (state.finished) return undefined
    state.finished = true
    const write = this.pendingWrite(state)
    if (write === undefined) {
      this.setCookie(state, request, reply)
      return undefined
    }
    return this.afterWrite(write, state, request, reply)
  }

  private async afterWrite (write: Promise<void>, state: SessionState, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await write
    this.setCookie(state, request, reply)
  }

  private pendingWrite (state: SessionState): Promise<void> | undefined {
    if (!state.stored) {
      const wanted = state.dirty || (this.config.saveUninitialized && !state.stale)
      return wanted ? this.traceWrite(state, (trace) => this.writeNew(state, trace)) : undefined
    }
    if (state.dirty) {
      const value = encodeSafely(state)
      if (value === undefined || value !== state.record) return this.traceWrite(state, (trace) => this.writeExisting(state, trace, value))
      // Every change set a key back to what it was: like an untouched session.
      state.dirty = false
    }
    if ((this.config.rolling || state.touch) && !state.wrote) return this.traceWrite(state, (trace) => this.renew(state, trace))
    return undefined
  }

  private async renew (state: SessionState, trace: SessionSaveTrace | undefined): Promise<void> {
    const ttl = this.ttlFor(state.createdAt)
    const touched = await this.call(state, 'touch', this.store.touch(this.keyOf(state), ttl))
    if (trace !== undefined) {
      trace.attempts = 1
      trace.outcome = touched ? 'touched' : 'gone'
    }
    if (!touched) reset(state)
  }

  private async writeNew (state: SessionState, trace: SessionSaveTrace | undefined): Promise<void> {
    const value = encodeRecord(state.createdAt, state.maxAge, data(state))
    const ttl = this.ttlFor(state.createdAt)
    for (let attempt = 0; attempt < MAX_ADD_ATTEMPTS; attempt++) {
      if (state.id === undefined || attempt > 0) this.assignId(state)
      if (trace !== undefined) {
        trace.attempts = attempt + 1
        trace.sessionHash = this.hashOf(state)
      }
      if (await this.call(state, 'save', this.store.add(this.keyOf(state), value, ttl))) {
        written(state)
        state.issue = true
        if (trace !== undefined) {
          trace.outcome = 'added'
          trace.bytes = Buffer.byteLength(value)
        }
        state.log.debug({ session: this.hashOf(state) }, `${LOG}session created`)
        return
      }
    }
    throw new SessionError('SESSION_CONFLICT', 'could not find a free session id')
  }

  // The first attempt writes the data as this request sees it, against the
  // version it loaded. On `exists` another request wrote in between: re-read,
  // re-apply only this request's changes key by key, and try again. On a miss
  // another request destroyed it: it stays destroyed. `first` is the record
  // already encoded for the first attempt, if the caller has it.
  private async writeExisting (state: SessionState, trace: SessionSaveTrace | undefined, first: string | undefined): Promise<void> {
    const key = this.keyOf(state)
    let value = first
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (state.version === undefined) {
        value = undefined
        if (trace !== undefined) trace.attempts++
        if (!await this.refresh(state, key)) {
          if (trace !== undefined) trace.outcome = 'gone'
          return
        }
      }
      const version = state.version ?? 0n
      value ??= encodeRecord(state.createdAt, state.maxAge, data(state))
      if (trace !== undefined) trace.attempts++
      const result = await this.call(state, 'save', this.store.cas(key, value, version, this.ttlFor(state.createdAt)))
      state.version = undefined
      if (result === 'stored') {
        written(state)
        if (trace !== undefined) {
          trace.outcome = attempt === 0 ? 'cas' : 'merged'
          trace.bytes = Buffer.byteLength(value)
        }
        return
      }
      value = undefined
      if (result === 'not_found') {
        if (trace !== undefined) trace.outcome = 'gone'
        this.gone(state)
        return
      }
    }
    throw new SessionError('SESSION_CONFLICT', `gave up saving the session after ${MAX_CAS_ATTEMPTS} concurrent updates`)
  }

  /** Re-reads the record and replays this request's changes on it; `false` when it is gone. */
  private async refresh (state: SessionState, key: string): Promise<boolean> {
    const found = await this.call(state, 'save', this.store.get(key))
    const record = found === undefined ? undefined : decodeRecord(found.value)
    const latest = record === undefined ? undefined : parseData(record.json)
    if (found === undefined || record === undefined || latest === undefined) {
      this.gone(state)
      return false
    }
    for (const [name, value] of state.changes ?? []) {
      if (value === DELETED) delete latest[name]
      else setData(latest, name, value)
    }
    state.data = latest
    state.json = undefined
    state.createdAt = record.createdAt
    if (!state.maxAgeChanged) state.maxAge = record.maxAge
    state.version = found.version
    return true
  }

  private gone (state: SessionState): void {
    state.log.info({ session: this.hashOf(state) }, 'fastify-memcached-session: session destroyed concurrently; changes dropped')
    reset(state)
  }

  private setCookie (state: SessionState, request: FastifyRequest, reply: FastifyReply): void {
    let header: string
    const https = request.protocol === 'https'
    if (!state.stored || state.id === undefined) {
      if (!state.stale) return
      header = this.cookies.clear(https)
    } else {
      const maxAge = state.maxAge ?? this.config.cookie.maxAge
      const renewBrowser = maxAge !== undefined && (this.config.rolling || state.wrote || state.touch)
      if (!(state.issue || state.renew || state.maxAgeChanged || renewBrowser)) return
      header = this.cookies.issue(state.id, this.cookieMaxAge(maxAge, state.createdAt), https)
    }
    reply.header('set-cookie', header)
    // A shared cache must never hand one user's session cookie to another.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store')
  }

  /** A cookie outliving the absolute lifetime would only carry a dead id. */
  private cookieMaxAge (maxAge: number | undefined, createdAt: number): number | undefined {
    if (maxAge === undefined) return undefined
    return Math.max(0, Math.min(maxAge, createdAt + this.config.absoluteTtl - nowSeconds()))
  }

  /** Store TTL: the idle timeout, cut short by the absolute lifetime. */
  private ttlFor (createdAt: number): number {
    const left = createdAt + this.config.absoluteTtl - nowSeconds()
    return Math.max(1, Math.min(this.config.ttl, left))
  }

  /** Takes a loaded record's header when it is a live session record of ours. */
  private adopt (state: SessionState, value: string): 'hit' | 'expired' | 'invalid' {
    const record = decodeRecord(value)
    if (record === undefined) {
      state.log.warn({ session: this.hashOf(state) }, `${LOG}ignoring a stored value that is not a session record`)
      return 'invalid'
    }
    if (nowSeconds() - record.createdAt >= this.config.absoluteTtl) return 'expired'
    state.json = record.json
    state.data = undefined
    state.createdAt = record.createdAt
    state.maxAge = record.maxAge
    return 'hit'
  }

  /** `prefix + sha256(id)`, computed once per id (drawing the id of a new session). */
  private keyOf (state: SessionState): string {
    state.key ??= this.config.prefix + sha256(state.id ?? this.assignId(state))
    return state.key
  }

  /** sha256 of the id, hex: the store key's tail and what logs and traces show instead of the id. */
  private hashOf (state: SessionState): string {
    return this.keyOf(state).slice(this.config.prefix.length)
  }

  /** Awaits a store call, logging and mapping its failure. */
  private async call<T> (state: SessionState, action: string, pending: Promise<T>): Promise<T> {
    try {
      return await pending
    } catch (error) {
      // Once the store failed, onSend does no more store work for this
      // request: the error response must not fail a second time.
      state.finished = true
      const mapped = storeError(error, action)
      state.log.error({ err: error, session: this.hashOf(state) }, mapped.message)
      throw mapped
    }
  }
}

/** The record as it would be written now; `undefined` when the data cannot be encoded (the write reports why). */
function encodeSafely (state: SessionState): string | undefined {
  try {
    return encodeRecord(state.createdAt, state.maxAge, data(state))
  } catch {
    return undefined
  }
}

function newState (manager: SessionManager, log: FastifyBaseLogger): SessionState {
  return {
    manager,
    log,
    id: undefined,
    key: undefined,
    record: undefined,
    json: undefined,
    data: undefined,
    changes: undefined,
    dirty: false,
    createdAt: nowSeconds(),
    maxAge: undefined,
    maxAgeChanged: false,
    stored: false,
    version: undefined,
    isNew: true,
    touch: false,
    wrote: false,
    renew: false,
    issue: false,
    stale: false,
    finished: false,
    cookie: undefined
  }
}

function written (state: SessionState): void {
  state.stored = true
  state.wrote = true
  state.changes = undefined
  state.dirty = false
  state.maxAgeChanged = false
  state.version = undefined
  state.record = undefined
}

/** Back to an empty new session (the store no longer holds this one). */
function reset (state: SessionState): void {
  state.id = undefined
  state.key = undefined
  state.record = undefined
  state.json = undefined
  state.data = {}
  state.changes = undefined
  state.dirty = false
  state.createdAt = nowSeconds()
  state.maxAge = undefined
  state.maxAgeChanged = false
  state.stored = false
  state.version = undefined
  state.isNew = true
}
