/**
 * One request's session as a lifecycle: a {@link Phase} for the record under
 * the current id and an {@link Origin} for what the browser's cookie names,
 * changed only through the named transitions below. Both `session.ts` (the
 * public object) and `manager.ts` (the store work) import this file; neither
 * imports the other's state.
 */
import type { FastifyBaseLogger } from 'fastify'
import { SessionError } from './errors.js'
import { parseData, type RecordData } from './record.js'

/**
 * Where the record under the current id stands:
 * - `fresh`: nothing stored, nothing to store (a new session nobody wrote to,
 *   or what is left after `destroy()`, a concurrent logout or an expiry).
 * - `unsaved`: nothing stored, something to store: `add` at the end.
 * - `loaded`: the record as loaded, unchanged.
 * - `changed`: a stored record with changes not yet written: `cas` at the end.
 * - `saved`: written by this request, nothing pending.
 */
export type Phase = 'fresh' | 'unsaved' | 'loaded' | 'changed' | 'saved'

/**
 * What the cookie the request came with names, which decides what the
 * response does with the browser's cookie:
 * - `none`: no usable cookie (absent, malformed or forged).
 * - `current`: the session in use, signed by the newest secret.
 * - `resign`: the session in use, signed by an older secret: re-issued.
 * - `lost`: a session the store no longer holds (expired, or destroyed by
 *   another request): left alone, since clearing it could wipe the cookie a
 *   concurrent login just set.
 * - `replaced`: a session this request destroyed or regenerated away:
 *   cleared, unless the response issues a new one.
 */
export type Origin = 'none' | 'current' | 'resign' | 'lost' | 'replaced'

/**
 * What the end of the request (`onSend`) still does with the store:
 * - `open`: its usual work: write what changed, or renew.
 * - `failed`: a store call of this request failed. A handler that caught the
 *   error and answers anyway (a status below 500) gets the usual work, so
 *   nothing it set, before or after the failure, is dropped while its
 *   response says all went well. The error response the failure became
 *   (500 and up) gets none: it must not fail a second time.
 * - `closed`: the response went out, or the end of the request's own write
 *   failed: no more store work.
 */
export type StoreWork = 'open' | 'failed' | 'closed'

/** Marks a key deleted in {@link SessionState.changes}. */
export const DELETED: unique symbol = Symbol('deleted')

/** What the session object asks of the plugin registration that made it. */
export interface SessionOps {
  /** The registration's `cookie.maxAge`, seconds. */
  readonly defaultMaxAge: number | undefined
  assignId (state: SessionState): string
  regenerate (state: SessionState): Promise<void>
  destroy (state: SessionState): Promise<void>
  reload (state: SessionState): Promise<void>
  save (state: SessionState): Promise<void>
}

/** Everything the plugin tracks about one request's session. */
export interface SessionState {
  readonly ops: SessionOps
  readonly log: FastifyBaseLogger
  phase: Phase
  origin: Origin
  /** What `onSend` may still do with the store. The session's own methods act in every case. */
  storeWork: StoreWork
  /** The request came with a live session: its response is private. */
  carried: boolean
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
  /** This request's changes, key by key, re-applied onto newer data on a CAS conflict. */
  changes: Map<string, unknown> | undefined
  /** Unix seconds when the session was created. */
  createdAt: number
  /** Per-session cookie Max-Age, seconds. */
  maxAge: number | undefined
  /** `maxAge` was set by this request: it wins over the stored one on a merge, and the cookie is re-issued (with or without Max-Age). */
  maxAgeSet: boolean
  /** CAS version of the record as loaded; undefined once it may be stale. */
  version: bigint | undefined
  /** The store's expiry was set to the right TTL during this request (a write, or the load's renewal). */
  renewed: boolean
  /** `session.touch()` asked for a renewal. */
  touchRequested: boolean
}

/** A new, empty session with no cookie behind it, created at `createdAt` (Unix seconds). */
export function newState (ops: SessionOps, log: FastifyBaseLogger, createdAt: number): SessionState {
  return {
    ops,
    log,
    phase: 'fresh',
    origin: 'none',
    storeWork: 'open',
    carried: false,
    id: undefined,
    key: undefined,
    record: undefined,
    json: undefined,
    data: undefined,
    changes: undefined,
    createdAt,
    maxAge: undefined,
    maxAgeSet: false,
    version: undefined,
    renewed: false,
    touchRequested: false
  }
}

export function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}

/** A record exists under the current id. */
export function isStored (state: SessionState): boolean {
  return state.phase === 'loaded' || state.phase === 'changed' || state.phase === 'saved'
}

/** `session.isNew`: the current id is not the one the request's cookie named. */
export function isNew (state: SessionState): boolean {
  return state.origin !== 'current' && state.origin !== 'resign'
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

/** Transition: `set`, `delete` or `cookie.maxAge` changed something that must be written. */
export function markChanged (state: SessionState): void {
  if (state.phase === 'fresh') state.phase = 'unsaved'
  else if (state.phase === 'loaded' || state.phase === 'saved') state.phase = 'changed'
}

/** Records one change, re-applied key by key if another write lands first. */
export function recordChange (state: SessionState, key: string, value: unknown): void {
  state.changes ??= new Map()
  state.changes.set(key, value)
  markChanged(state)
}

/**
 * Transition: the load found a live record under the cookie's id; `renewed`
 * when the load also set its expiry right.
 */
export function markLoaded (state: SessionState, value: string, version: bigint, resign: boolean, renewed: boolean): void {
  state.phase = 'loaded'
  state.origin = resign ? 'resign' : 'current'
  state.carried = true
  state.record = value
  state.version = version
  state.renewed = renewed
}

/** Transition of `reload()`: the record as the store holds it now, this request's unsaved changes dropped. */
export function markReloaded (state: SessionState, value: string, version: bigint): void {
  state.phase = 'loaded'
  state.changes = undefined
  state.maxAgeSet = false
  state.record = value
  state.version = version
}

/** Transition of `reload()` on a session the store does not hold: empty, nothing to write. */
export function markDiscarded (state: SessionState): void {
  if (state.phase === 'unsaved') state.phase = 'fresh'
  state.data = {}
  state.json = undefined
  state.changes = undefined
  state.maxAgeSet = false
}

/** Transition: this request wrote the record; only later changes are pending. */
export function markWritten (state: SessionState): void {
  state.phase = 'saved'
  state.changes = undefined
  state.version = undefined
  state.record = undefined
  state.renewed = true
}

/** The record's expiry was renewed with the right TTL (a `touch`). */
export function markRenewed (state: SessionState): void {
  state.renewed = true
}

/** Transition: a change set everything back to what was loaded, so nothing is written. */
export function markUnchanged (state: SessionState): void {
  if (state.phase === 'changed') state.phase = 'loaded'
  state.changes = undefined
}

/**
 * Transition of `regenerate()` once the old record is deleted: the data (and
 * per-session maxAge) carried over wait to be written under a new id, and the
 * new session's lifetime starts now. `storeEmpty` (`saveUninitialized`): the
 * new session is stored even if nothing was carried, as a new visitor's is.
 */
export function markMoved (state: SessionState, storeEmpty: boolean): void {
  const carries = Object.keys(data(state)).length > 0 || state.maxAge !== undefined
  state.phase = carries || storeEmpty ? 'unsaved' : 'fresh'
  state.origin = 'replaced'
  state.id = undefined
  state.key = undefined
  state.record = undefined
  state.changes = undefined
  state.createdAt = nowSeconds()
  state.version = undefined
  state.renewed = false
}

/**
 * Transition: back to an empty new session, because the record is gone
 * (`origin` says whether this request removed it, `replaced`, or found it
 * missing, `lost`). Nothing of the old record survives: no data, no
 * creation time, no id.
 */
export function markEmpty (state: SessionState, origin: 'lost' | 'replaced'): void {
  state.phase = 'fresh'
  // A cookie this request replaced is cleared, even if the record then turns out lost.
  if (state.origin !== 'replaced') state.origin = origin
  state.id = undefined
  state.key = undefined
  state.record = undefined
  state.json = undefined
  state.data = {}
  state.changes = undefined
  state.createdAt = nowSeconds()
  state.maxAge = undefined
  state.maxAgeSet = false
  state.version = undefined
  state.renewed = false
}

/** Transition: a store call failed (see {@link StoreWork}). */
export function markFailed (state: SessionState): void {
  if (state.storeWork === 'open') state.storeWork = 'failed'
}

/** Transition: the response went out, or its own write failed: no more store work at the end of this request. */
export function markClosed (state: SessionState): void {
  state.storeWork = 'closed'
}

/** `onSend` does no store work: it did already, or this is the error response of a failed store call. */
export function isClosedTo (state: SessionState, statusCode: number): boolean {
  return state.storeWork === 'closed' || (state.storeWork === 'failed' && statusCode >= 500)
}
