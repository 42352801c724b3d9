/**
 * The multi-key gets a coalescing client writes, seen from inside its own
 * process: while recording, every socket write is scanned for `get` lines
 * and the number of keys in each is kept, in order. The batched ceiling
 * (raw.ts) replays them, so a coalesced get is compared with the very same
 * requests for memcached. Costs one `indexOf` per line written (one line per
 * batch), so it is only switched on for coalesced scenarios.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'

/** Batches kept per window: enough to replay its mix. */
const MAX_RECORDED = 4096
const GET = Buffer.from('get ')

export class BatchRecorder {
  private readonly sizes: number[] = []
  private readonly original = net.Socket.prototype.write

  /** @param keyBytes length of every key the client sends (the bench's keys are all equally long) */
  constructor (private readonly keyBytes: number) {}

  start (): void {
    const original = this.original
    const record = (chunk: Buffer): void => this.record(chunk)
    net.Socket.prototype.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]): boolean {
      if (Buffer.isBuffer(chunk)) record(chunk)
      return (original as (this: net.Socket, ...args: unknown[]) => boolean).call(this, chunk, ...rest)
    } as typeof original
  }

  /** Stops recording; returns the batch sizes, in the order written. */
  stop (): number[] {
    net.Socket.prototype.write = this.original
    return this.sizes.splice(0)
  }

  /** `get k1 … kN\r\n` is 4 + N keys + (N - 1) spaces + 2 bytes long. */
  private record (chunk: Buffer): void {
    for (let start = 0; start < chunk.length && this.sizes.length < MAX_RECORDED;) {
      const lf = chunk.indexOf(10, start)
      if (lf === -1) return
      if (chunk.compare(GET, 0, GET.length, start, start + GET.length) === 0) {
        this.sizes.push((lf + 1 - start - GET.length - 1) / (this.keyBytes + 1))
      }
      start = lf + 1
    }
  }
}
