/**
 * Tracing of session loads and saves through `node:diagnostics_channel`,
 * beside the client's per-command channel (`fastify-memcached-session:command`):
 * an APM or OpenTelemetry subscribes and sees one span per session load or
 * write, with the memcached commands it caused nested inside. Payloads carry
 * `sha256(id)`, outcomes, sizes and counts: never the id, never a value.
 * Nothing is built or published while nobody subscribes.
 */
import diagnosticsChannel from 'node:diagnostics_channel'
import { traceSettle } from '../protocol/diagnostics.js'

/**
 * How a load ended:
 * - `hit`: the store held the session and it is in use.
 * - `miss`: the store did not hold it (expired idle, destroyed, or never existed).
 * - `expired`: the store held it, but it is older than `absoluteTtl`.
 * - `invalid`: the store held a value that is not a session record.
 * - `rejected`: the cookie was malformed or its signature wrong; the store was not asked.
 */
export type LoadOutcome = 'hit' | 'miss' | 'expired' | 'invalid' | 'rejected'

/**
 * How a write ended:
 * - `added`: a new session was written (`add`).
 * - `cas`: an existing session was written on the first attempt (`cas`).
 * - `merged`: written after a re-read, this request's changes merged key by key: another
 *   process wrote it meanwhile (`cas` failed), or this save waited behind another save of
 *   the same session and went in one batch with the others that waited.
 * - `touched`: an unchanged session had its idle timeout renewed (`touch`).
 * - `destroyed`: `session.destroy()` deleted it.
 * - `regenerated`: `session.regenerate()` deleted the old record (the new one follows as `added`).
 * - `gone`: the store no longer held it (another request destroyed it, or it expired); nothing was written.
 */
export type SaveOutcome = 'added' | 'cas' | 'merged' | 'touched' | 'destroyed' | 'regenerated' | 'gone'

/** The context object of every event of {@link loadChannel}. */
export interface SessionLoadTrace {
  /** sha256 of the session id, hex (the store key without its prefix); `undefined` for a `rejected` cookie. */
  sessionHash: string | undefined
  /** `true` for `session.reload()`, `false` for the load at the start of a request. */
  reload: boolean
  /** Set before `asyncEnd`; `undefined` when the store call failed. */
  outcome: LoadOutcome | undefined
  /** UTF-8 bytes of the stored record read (0 on a miss). */
  bytes: number
  /** The rejection, on `error` and `asyncEnd` of a failed load. */
  error?: unknown
}

/** The context object of every event of {@link saveChannel}. */
export interface SessionSaveTrace {
  /** sha256 of the session id, hex; for `added`, of the id finally written. */
  sessionHash: string
  /** Set before `asyncEnd`; `undefined` when the store call failed. */
  outcome: SaveOutcome | undefined
  /** UTF-8 bytes of the record written (0 for `touched`, `destroyed`, `regenerated`, `gone`). */
  bytes: number
  /** Store calls made: `add` tries, `cas` tries plus the re-reads between them (shared by a batch of saves), or 1. */
  attempts: number
  /** The rejection, on `error` and `asyncEnd` of a failed write. */
  error?: unknown
}

/**
 * `tracing:fastify-memcached-session:session:load:{start,end,asyncStart,asyncEnd,error}`.
 * Fires when a request brings a session cookie, and on `session.reload()`.
 * `start` and `end` fire when the load begins, `asyncStart`/`asyncEnd` when it
 * settles, `error` before them when the store failed. A `rejected` cookie
 * needs no I/O: its four events fire at once.
 */
export const loadChannel = diagnosticsChannel.tracingChannel<unknown, SessionLoadTrace>('fastify-memcached-session:session:load')

/**
 * `tracing:fastify-memcached-session:session:save:{start,end,asyncStart,asyncEnd,error}`.
 * Fires for every write the plugin makes: the end-of-request `add`, `cas` or
 * `touch`, `session.save()`, and the deletes of `destroy()` and `regenerate()`.
 * Requests that write nothing publish nothing.
 */
export const saveChannel = diagnosticsChannel.tracingChannel<unknown, SessionSaveTrace>('fastify-memcached-session:session:save')

type Channel<T extends object> = diagnosticsChannel.TracingChannel<unknown, T>

/**
 * Publishes `start` and `end` now and the settling events around `promise`.
 * Call only when `channel.hasSubscribers`, and before starting the work, so
 * the memcached commands it sends nest inside the span.
 */
export function traceStart<T extends object> (channel: Channel<T>, trace: T): void {
  channel.start.publish(trace)
}

/** The second half of {@link traceStart}: the client's own settling helper. */
export { traceSettle }

/** All four events at once, for a load that needed no I/O. */
export function traceInstant (trace: SessionLoadTrace): void {
  loadChannel.start.publish(trace)
  loadChannel.end.publish(trace)
  loadChannel.asyncStart.publish(trace)
  loadChannel.asyncEnd.publish(trace)
}
