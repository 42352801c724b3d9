import type { CasResult, ServerHealth } from '../../protocol/client.js'

/**
 * One stored session record as a store returns it: the serialized session and
 * the token that {@link SessionStore.cas} needs to overwrite exactly this
 * version.
 */
export interface StoredRecord {
  /** The serialized session, exactly as written. */
  value: string
  /**
   * Opaque version token: memcached's 64-bit CAS unique, or any value that
   * changes on every write of the key. Compare only by passing it back to
   * {@link SessionStore.cas}.
   */
  version: bigint
}

/**
 * Where sessions live. The plugin talks to a store only through these five
 * calls (six with the optional `getAndTouch`) on serialized records, with memcached's semantics, so that the
 * conflict handling (merge on `exists`, no resurrection on `not_found`) lives
 * once, in the plugin, whatever the store.
 *
 * Keys arrive already prefixed and hashed (`prefix + sha256(id)`), at most
 * 250 bytes, without whitespace or control characters. Every `ttl` is
 * relative seconds, may exceed 30 days, and `0` means no expiry; an expired
 * record must behave exactly like a missing one.
 *
 * Errors: reject with an error whose `code` is `'MC_TOO_LARGE'` when a value
 * is larger than the store accepts (the plugin answers 500 and the old record
 * must be left untouched); any other rejection means the store is unavailable
 * (the plugin answers 503). A miss is never an error.
 */
export interface SessionStore {
  /** The record and its version, or `undefined` when missing or expired. */
  get (key: string): Promise<StoredRecord | undefined>
  /**
   * {@link SessionStore.get} and {@link SessionStore.touch} in one round
   * trip: the record as `get` returns it, its expiry reset to `ttl` seconds
   * from now when it exists. Optional: without it the plugin calls `get` at
   * load and `touch` at the end of a request that only read its session (two
   * round trips instead of one).
   */
  getAndTouch? (key: string, ttl: number): Promise<StoredRecord | undefined>
  /** Writes only if the key is missing; `false` when it already exists. */
  add (key: string, value: string, ttl: number): Promise<boolean>
  /**
   * Writes only if the record is still at `version`: `'exists'` when another
   * write came first, `'not_found'` when the key is missing or expired.
   */
  cas (key: string, value: string, version: bigint, ttl: number): Promise<CasResult>
  /** Resets the expiry to `ttl` seconds from now; `false` when missing. */
  touch (key: string, ttl: number): Promise<boolean>
  /**
   * Removes the record; `false` when it was already missing (or, in a
   * replicated store, already destroyed on any replica): `regenerate()`
   * moves the data only on `true`.
   */
  delete (key: string): Promise<boolean>
  /**
   * Releases what the store owns (sockets, timers). The plugin calls it on
   * `onClose` only for a store it created itself.
   */
  close? (): Promise<void>
  /**
   * Readiness: one entry per backend (`'host:port'` for memcached) saying
   * whether it answered and how long it took (`latencyMs`, milliseconds).
   * Must resolve, never reject: a dead backend is `ok: false`.
   */
  ping? (): Promise<Record<string, ServerHealth>>
}
