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
 *
 * The contract floor (`CoalescedFloor.connect` with `contract`) adds what DESIGN asks
 * of any client on top: each key is validated before it is queued (no
 * whitespace or control characters, at most 250 bytes: `keyProblem`, as
 * ours), and each VALUE's key is checked against the key sent, so a reply
 * for a key never asked fails instead of answering the wrong caller. It
 * still trusts every key to be answered, in order, as all are in the bench.
 */
import { Buffer } from 'node:buffer'
import { MemcachedError } from '../../src/index.js'
import { invalidKey, isKeyAt, keyProblem } from '../../src/protocol/commands.js'
import { CallerQueue } from './callers.js'
import { ValueReader } from './value-reader.js'

export class CoalescedFloor extends ValueReader {
  private asked: string[] = []
  private readonly callers = new CallerQueue<Buffer>()
  /** Contract floor: the keys written, batch by batch, oldest first, and where the replies stand in them. */
  private readonly sent: Array<string[] | undefined> = []
  private sentHead = 0
  private nextKey = 0

  /**
   * The coalesced floor, or with `contract` the contract floor: keys
   * validated when queued, and each VALUE's key checked against the key sent.
   */
  static async connect (host: string, port: number, contract = false): Promise<CoalescedFloor> {
    // Every value a view: at 128 and 1,024 in flight that beat ours' rule (docs/benchmarks.md, run M).
    return await new CoalescedFloor(0, contract).connect(host, port)
  }

  /** One promise per get, the caller's own: no async wrapper around it. */
  get (key: string): Promise<Buffer | undefined> {
    if (this.readsKeys) {
      const problem = keyProblem(key)
      if (problem !== undefined) return Promise.reject(invalidKey(key, problem))
    }
    this.asked.push(key)
    this.scheduleFlush(this.callers.size)
    return this.callers.add()
  }

  protected flush (): void {
    const asked = this.asked
    if (asked.length === 0) return
    this.asked = []
    if (this.readsKeys) this.sent.push(asked)
    this.write(Buffer.from(`get ${asked.join(' ')}\r\n`, 'latin1'))
  }

  protected override keyRead (line: Buffer, start: number, end: number): boolean {
    const keys = this.sent[this.sentHead]
    if (keys === undefined) return false
    const key = keys[this.nextKey++] as string
    if (this.nextKey === keys.length) this.nextBatch()
    return isKeyAt(line, start, end, key)
  }

  /** The replies reached the end of the oldest batch's keys. */
  private nextBatch (): void {
    this.sent[this.sentHead++] = undefined
    this.nextKey = 0
    if (this.sentHead > 1024 && this.sentHead * 2 > this.sent.length) {
      this.sent.splice(0, this.sentHead)
      this.sentHead = 0
    }
  }

  protected valueRead (value: Buffer): void {
    if (!this.malformed) return this.callers.settle(value)
    this.malformed = false
    this.callers.settle(undefined, new MemcachedError('MC_PROTOCOL', 'coalesced floor: a reply line or a value\'s CRLF was not as expected'))
  }

  /** A malformed END fails the next caller. */
  protected endRead (): void {}
}
