/**
 * Tracing of client commands through `node:diagnostics_channel`, the way
 * undici traces HTTP requests: an APM or OpenTelemetry subscribes without
 * patching anything. Nothing is built or published while nobody subscribes.
 * Payloads carry sizes and counts, never keys' values.
 */
import { Buffer } from 'node:buffer'
import diagnosticsChannel from 'node:diagnostics_channel'

/** The context object of every event of {@link commandChannel}. */
export interface CommandTrace {
  /** Protocol verb: `get`, `gets`, `set`, `cas`, `delete`, `incr`, `flush_all`, `version`, `stats`, ... */
  command: string
  /** `host:port` of the server the command went to. */
  server: string
  /** Keys the command names (0 for server-wide commands). */
  keys: number
  /** Value bytes sent (storage commands), not counting the request line. */
  bytesOut: number
  /** Value bytes received; set before `asyncEnd`. */
  bytesIn: number
  /** The rejection, on `error` and `asyncEnd` of a failed command. */
  error?: unknown
}

/**
 * `tracing:fastify-memcached-session:command:{start,end,asyncStart,asyncEnd,error}`.
 * `start` and `end` fire when the command is queued, `asyncStart`/`asyncEnd`
 * when it settles, `error` before them when it rejects.
 */
export const commandChannel = diagnosticsChannel.tracingChannel<unknown, CommandTrace>('fastify-memcached-session:command')

/** Value bytes in a command's result (a Buffer, an item, a map of Buffers). */
function bytesOf (result: unknown): number {
  if (Buffer.isBuffer(result)) return result.length
  if (result instanceof Map) {
    let total = 0
    for (const value of result.values()) total += bytesOf(value)
    return total
  }
  if (typeof result === 'object' && result !== null && 'value' in result) return bytesOf(result.value)
  return 0
}

/**
 * The settling half of a traced operation: `end` now, then `asyncStart` and
 * `asyncEnd` when `promise` settles, `error` before them when it rejects.
 * `onResult` fills the context from the result before it is published.
 * Call `channel.start.publish(trace)` first, and only when `channel.hasSubscribers`.
 */
export function traceSettle<T extends { error?: unknown }, R> (
  channel: diagnosticsChannel.TracingChannel<unknown, T>, trace: T, promise: Promise<R>, onResult?: (trace: T, result: R) => void
): Promise<R> {
  channel.end.publish(trace)
  return promise.then((result) => {
    onResult?.(trace, result)
    channel.asyncStart.publish(trace)
    channel.asyncEnd.publish(trace)
    return result
  }, (error: unknown) => {
    trace.error = error
    channel.error.publish(trace)
    channel.asyncStart.publish(trace)
    channel.asyncEnd.publish(trace)
    throw error
  })
}

function recordBytesIn (trace: CommandTrace, result: unknown): void {
  trace.bytesIn = bytesOf(result)
}

/** Publishes the events of one command around `promise`; call only when `commandChannel.hasSubscribers`. */
export function traceCommand<T> (trace: CommandTrace, promise: Promise<T>): Promise<T> {
  commandChannel.start.publish(trace)
  return traceSettle(commandChannel, trace, promise, recordBytesIn)
}

/** The verb of a request line: `set k 0 0 1\r\n` -> `set`. */
export function verbOf (line: string): string {
  const end = line.search(/[ \r]/)
  return end === -1 ? line : line.slice(0, end)
}
