/**
 * The coalesced floor: the least any client whose `get(key)` returns a
 * promise does per key when it coalesces the gets of a tick into one
 * `get k1 … kN`, measured through the same loops as the clients. Its batches
 * are replayed by the batched ceiling (raw.ts) right after it, as ours' are,
 * so the ratio it reaches there bounds what such a client reaches against
 * the "0.8x the batched ceiling" target.
 *
 * On top of the least reading of replies (value-reader.ts), only what that
 * API cannot do without: a promise per get, settled from a FIFO of callers
 * in reply order, and the keys of a tick joined into one request line.
 */
import { Buffer } from 'node:buffer'
import { MemcachedError } from '../../src/index.js'
import { CallerQueue } from './callers.js'
import { ValueReader } from './value-reader.js'

export class CoalescedFloor extends ValueReader {
  private asked: string[] = []
  private readonly callers = new CallerQueue<Buffer>()

  static async connect (host: string, port: number): Promise<CoalescedFloor> {
    // Every value a view: at 128 and 1,024 in flight that beat ours' rule (docs/benchmarks.md, run M).
    const floor = new CoalescedFloor(0)
    await floor.connect(host, port)
    return floor
  }

  /** One promise per get, the caller's own: no async wrapper around it. */
  get (key: string): Promise<Buffer | undefined> {
    this.asked.push(key)
    this.scheduleFlush(this.callers.size)
    return this.callers.add()
  }

  protected flush (): void {
    const asked = this.asked
    if (asked.length === 0) return
    this.asked = []
    this.write(Buffer.from(`get ${asked.join(' ')}\r\n`, 'latin1'))
  }

  protected valueRead (value: Buffer): void {
    if (!this.malformed) return this.callers.settle(value)
    this.malformed = false
    this.callers.settle(undefined, new MemcachedError('MC_PROTOCOL', 'coalesced floor: a reply line or a value\'s CRLF was not as expected'))
  }

  /** A malformed END fails the next caller. */
  protected endRead (): void {}
}
