import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { idHash, type CookieId } from './cookie.js'
import { saveChannel, traceSettle, traceStart, type SessionSaveTrace } from './diagnostics.js'
import { SessionError, storeError } from './errors.js'
import type { SessionConfig } from './options.js'
import { decodeRecord, encodeRecord, parseData, setData } from './record.js'
import { DELETED, data, markEmpty, markFailed, markRenewed, markWritten, nowSeconds, type SessionState } from './state.js'
import type { CasResult } from '../protocol/client.js'
import type { SessionStore, StoredRecord } from './stores/store.js'

// In one process, saves of a session never race (they queue, see
// SessionWriter), so a failed CAS means another process wrote: N processes
// writing one session all finish within N attempts. This bound only stops a
// livelock.
const MAX_CAS_ATTEMPTS = 32
/** ms: the cap of the jittered backoff between two CAS attempts. */
const MAX_BACKOFF = 100
// An `add` that finds the key taken means a 256-bit id collided: retrying
// with new ids is for correctness, never expected to loop.
const MAX_ADD_ATTEMPTS = 3
const LOG = 'fastify-memcached-session: '

/** What a write does with its trace: fill in the outcome, bytes and attempts when there is one. */
export type Write = (trace: SessionSaveTrace | undefined) => Promise<void>

/** One request's save of an existing session, waiting for or taking part in a CAS write. */
interface Member {
  readonly state: SessionState
  readonly trace: SessionSaveTrace | undefined
}

/** A queued member and how to tell it the outcome. */
interface Queued extends Member {
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

/** The record a batch of saves writes: the latest stored one with every member's changes on top. */
interface Merged {
  value: string
  json: string
  createdAt: number
  maxAge: number | undefined
}

/**
 * Every store call the plugin makes for one registration: ids and keys,
 * `add` for new sessions, `cas` with a key-level merge for existing ones,
 * `touch`, `delete`, and the mapping of store failures. The add /
 * cas-merge / no-resurrection rules live here once, for every store alike.
 *
 * At most one `cas` write per session key is in flight in this process.
 * Saves of the same session arriving meanwhile queue; when the write in
 * flight ends, the queued ones go as one batch: one re-read, every member's
 * changes re-applied key by key in arrival order, one `cas`. So N concurrent
 * requests of one session cost about N loads and a few writes, instead of
 * N² failed CAS attempts.
 */
export class SessionWriter {
  readonly config: SessionConfig
  readonly store: SessionStore
  /** Store key -> saves waiting behind the write in flight for it (present while one is). */
  private readonly queues = new Map<string, Queued[]>()

  constructor (config: SessionConfig, store: SessionStore) {
    this.config = config
    this.store = store
  }

  /** Draws the random id of a new session. */
  assignId (state: SessionState): string {
    state.id = randomBytes(32).toString('base64url')
    state.key = undefined
    return state.id
  }

  /** `prefix + sha256(id)`, computed once per id (drawing the id of a new session). */
  keyOf (state: SessionState): string {
    state.key ??= this.config.prefix + idHash(state.id ?? this.assignId(state))
    return state.key
  }

  /** Takes a verified cookie's id, and its key from the hash the cookie carries (no sha256 per request). */
  useCookieId (state: SessionState, cookie: CookieId): void {
    state.id = cookie.id
    state.key = this.config.prefix + cookie.hash
  }

  /** sha256 of the id, hex: the store key's tail and what logs and traces show instead of the id. */
  hashOf (state: SessionState): string {
    return this.keyOf(state).slice(this.config.prefix.length)
  }

  /** Store TTL, seconds: the idle timeout, cut short by the absolute lifetime; `now` in Unix seconds. */
  ttlFor (createdAt: number, now = nowSeconds()): number {
    const left = createdAt + this.config.absoluteTtl - now
    return Math.max(1, Math.min(this.config.ttl, left))
  }

  /** Awaits a store call; a failure is logged, ends the request's store work, and becomes a {@link SessionError}. */
  call<T> (state: SessionState, action: string, pending: Promise<T>): Promise<T> {
    return this.callFor([state], action, pending)
  }

  /** Runs a write, traced on {@link saveChannel} when anyone subscribes. */
  traced (state: SessionState, write: Write): Promise<void> {
    if (!saveChannel.hasSubscribers) return write(undefined)
    const trace: SessionSaveTrace = { sessionHash: this.hashOf(state), outcome: undefined, bytes: 0, attempts: 0 }
    traceStart(saveChannel, trace)
    return traceSettle(saveChannel, trace, write(trace))
  }

  /** Writes a new session with `add`, drawing a new id if it collides. */
  async writeNew (state: SessionState, trace: SessionSaveTrace | undefined): Promise<void> {
    const value = encodeRecord(state.createdAt, state.maxAge, data(state))
    const ttl = this.ttlFor(state.createdAt)
    for (let attempt = 0; attempt < MAX_ADD_ATTEMPTS; attempt++) {
      if (state.id === undefined || attempt > 0) this.assignId(state)
      if (trace !== undefined) {
        trace.attempts = attempt + 1
        trace.sessionHash = this.hashOf(state)
      }
      if (await this.call(state, 'save', this.store.add(this.keyOf(state), value, ttl))) {
        markWritten(state)
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

  /**
   * Writes an existing session with `cas`. Alone, the first attempt writes
   * the data as this request sees it against the version it loaded (`first`
   * is that record, already encoded, if the caller has it). Behind another
   * save of the same session, it waits and goes in the next batch.
   */
  async writeExisting (state: SessionState, trace: SessionSaveTrace | undefined, first: string | undefined): Promise<void> {
    const key = this.keyOf(state)
    // Encoded before it can join a batch: data JSON cannot hold fails this
    // request alone, never the saves it would have been merged with.
    const own = first ?? encodeRecord(state.createdAt, state.maxAge, data(state))
    const waiting = this.queues.get(key)
    if (waiting !== undefined) {
      await new Promise<void>((resolve, reject) => { waiting.push({ state, trace, resolve, reject }) })
      return
    }
    this.queues.set(key, [])
    try {
      // Alone, it is never split.
      await this.casLoop(key, [{ state, trace }], own, state.version)
    } finally {
      this.next(key)
    }
  }

  /** Renews the idle timeout with `touch`; a record gone meanwhile leaves an empty session. */
  async renew (state: SessionState, trace: SessionSaveTrace | undefined): Promise<void> {
    const touched = await this.call(state, 'touch', this.store.touch(this.keyOf(state), this.ttlFor(state.createdAt)))
    if (trace !== undefined) {
      trace.attempts = 1
      trace.outcome = touched ? 'touched' : 'gone'
    }
    if (touched) markRenewed(state)
    else this.gone(state)
  }

  /** The delete of `destroy()` or `regenerate()`: `false` when the record was already gone. */
  async remove (state: SessionState, action: 'destroy' | 'regenerate'): Promise<boolean> {
    let deleted = false
    await this.traced(state, async (trace) => {
      deleted = await this.call(state, action, this.store.delete(this.keyOf(state)))
      if (trace === undefined) return
      trace.attempts = 1
      trace.outcome = !deleted ? 'gone' : action === 'destroy' ? 'destroyed' : 'regenerated'
    })
    return deleted
  }

  /** The record under the state's key was not found: the session is over, and this request's changes are dropped. */
  gone (state: SessionState): void {
    state.log.info({ session: this.hashOf(state) }, `${LOG}session destroyed or expired concurrently; changes dropped`)
    markEmpty(state, 'lost')
  }

  /** Starts the batch of the saves that queued behind the write that just ended. */
  private next (key: string): void {
    const waiting = this.queues.get(key)
    if (waiting === undefined || waiting.length === 0) {
      this.queues.delete(key)
      return
    }
    this.queues.set(key, [])
    void this.batch(key, waiting).finally(() => { this.next(key) })
  }

  /**
   * Writes the saves that waited as one. If together they are too large for
   * the store, each goes alone: one request's oversized data must not cost
   * the others their changes.
   */
  private async batch (key: string, waiting: Queued[]): Promise<void> {
    let outcome: 'done' | 'split'
    try {
      outcome = await this.casLoop(key, waiting as [Queued, ...Queued[]], undefined, undefined)
    } catch (error) {
      for (const member of waiting) member.reject(error)
      return
    }
    if (outcome === 'done') {
      for (const member of waiting) member.resolve()
      return
    }
    for (const member of waiting) {
      try {
        await this.casLoop(key, [member], undefined, undefined)
        member.resolve()
      } catch (error) {
        member.reject(error)
      }
    }
  }

  // On `exists` another process wrote in between: re-read, re-apply only the
  // members' changes key by key, back off a random moment, try again. On a
  // miss the session was destroyed (or expired): it stays that way. `split`:
  // several members together are too large for the store and nothing was
  // written; the caller tries each alone.
  private async casLoop (key: string, members: [Member, ...Member[]], first: string | undefined, loaded: bigint | undefined): Promise<'done' | 'split'> {
    const states = members.map((member) => member.state)
    const own = members[0].state
    // Only a save that went alone knows a version worth trying: a queued one
    // loaded before the write it waited for.
    let next = members.length === 1 && loaded !== undefined && first !== undefined
      ? { value: first, version: loaded }
      : undefined
    let merged: Merged | undefined
    let attempts = 0
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(Math.random() * Math.min(MAX_BACKOFF, 2 ** attempt))
      if (next === undefined) {
        attempts++
        const found = await this.callFor(states, 'save', this.store.get(key))
        merged = found === undefined ? undefined : merge(found, members)
        if (found === undefined || merged === undefined) {
          this.dropAll(members, attempts)
          return 'done'
        }
        next = { value: merged.value, version: found.version }
      }
      attempts++
      const ttl = this.ttlFor(merged?.createdAt ?? own.createdAt)
      let result: CasResult
      try {
        result = await this.store.cas(key, next.value, next.version, ttl)
      } catch (error) {
        if (members.length > 1 && isTooLarge(error)) return 'split'
        throw this.failed(states, 'save', error)
      }
      if (result === 'stored') {
        this.settle(members, merged === undefined ? 'cas' : 'merged', attempts, Buffer.byteLength(next.value))
        for (const state of states) adopt(state, merged)
        return 'done'
      }
      if (result === 'not_found') {
        this.dropAll(members, attempts)
        return 'done'
      }
      next = undefined
    }
    throw new SessionError('SESSION_CONFLICT', `gave up saving the session after ${MAX_CAS_ATTEMPTS} concurrent updates`)
  }

  /** The record is gone: every member's session is over. */
  private dropAll (members: Member[], attempts: number): void {
    this.settle(members, 'gone', attempts, 0)
    for (const member of members) this.gone(member.state)
  }

  private settle (members: Member[], outcome: 'cas' | 'merged' | 'gone', attempts: number, bytes: number): void {
    for (const { trace } of members) {
      if (trace === undefined) continue
      trace.outcome = outcome
      trace.attempts = attempts
      trace.bytes = bytes
    }
  }

  private async callFor<T> (states: SessionState[], action: string, pending: Promise<T>): Promise<T> {
    try {
      return await pending
    } catch (error) {
      throw this.failed(states, action, error)
    }
  }

  /**
   * A store failure, logged with the store's error (its code, server, key:
   * for the log only) and mapped to the error the requests fail with. The
   * error response it becomes does no store work in onSend (it must not fail
   * a second time); a handler that catches it keeps the end of its request's
   * writes (see StoreWork in state.ts).
   */
  private failed (states: SessionState[], action: string, error: unknown): SessionError {
    const mapped = storeError(error, action)
    for (const state of states) {
      markFailed(state)
      state.log.error({ err: error, session: this.hashOf(state) }, mapped.message)
    }
    return mapped
  }
}

/** The stored record with every member's changes on top, in arrival order; `undefined` when it is not a session record. */
function isTooLarge (error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === 'MC_TOO_LARGE'
}

function merge (found: StoredRecord, members: Member[]): Merged | undefined {
  const record = decodeRecord(found.value)
  const latest = record === undefined ? undefined : parseData(record.json)
  if (record === undefined || latest === undefined) return undefined
  let maxAge = record.maxAge
  for (const { state } of members) {
    for (const [name, value] of state.changes ?? []) {
      if (value === DELETED) delete latest[name]
      else setData(latest, name, value)
    }
    if (state.maxAgeSet) maxAge = state.maxAge
  }
  const value = encodeRecord(record.createdAt, maxAge, latest)
  return { value, json: value.slice(value.indexOf(':', value.indexOf(':') + 1) + 1), createdAt: record.createdAt, maxAge }
}

/** After a write: a member's session is what was written (merged, or its own data). */
function adopt (state: SessionState, merged: Merged | undefined): void {
  if (merged !== undefined) {
    state.json = merged.json
    state.data = undefined
    state.createdAt = merged.createdAt
    state.maxAge = merged.maxAge
  }
  markWritten(state)
}
