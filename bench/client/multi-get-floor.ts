/**
 * The multi-get floor: the least any client whose `getMulti(keys)` returns a
 * promise of a Map does per call, measured through the same loops as the
 * clients on the 100-key gets. On top of the least reading of replies
 * (value-reader.ts): the request line joined from the caller's keys, a
 * promise per call settled in reply order, and a Map from each key to its
 * value, filled in request order (every key is trusted to be a hit). What
 * it reaches against the raw-socket ceiling bounds what such a client
 * reaches against the 100-key target.
 */
import { Buffer } from 'node:buffer'
import { MemcachedError } from '../../src/index.js'
import { CallerQueue } from './callers.js'
import { VIEW_MIN_FILL } from '../../src/protocol/parser.js'
import { ValueReader } from './value-reader.js'

export class MultiGetFloor extends ValueReader {
  private lines: string[] = []
  /** The keys of each call in flight, oldest first from `head`. */
  private readonly keys: Array<readonly string[] | undefined> = []
  private head = 0
  private found = new Map<string, Buffer>()
  private readonly callers = new CallerQueue<Map<string, Buffer>>()

  static async connect (host: string, port: number): Promise<MultiGetFloor> {
    // Ours' rule: a view from every read cost twice ours' CPU per 100-key get.
    return await new MultiGetFloor(VIEW_MIN_FILL).connect(host, port)
  }

  getMulti (keys: readonly string[]): Promise<Map<string, Buffer> | undefined> {
    this.lines.push(`get ${keys.join(' ')}\r\n`)
    this.keys.push(keys)
    this.scheduleFlush(this.callers.size)
    return this.callers.add()
  }

  protected flush (): void {
    const lines = this.lines
    if (lines.length === 0) return
    this.lines = []
    this.write(Buffer.from(lines.length === 1 ? lines[0] as string : lines.join(''), 'latin1'))
  }

  protected valueRead (value: Buffer): void {
    const keys = this.keys[this.head] as readonly string[]
    this.found.set(keys[this.found.size] as string, value)
  }

  protected endRead (): void {
    const found = this.found
    this.found = new Map()
    this.keys[this.head++] = undefined
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys.splice(0, this.head)
      this.head = 0
    }
    if (!this.malformed) return this.callers.settle(found)
    this.malformed = false
    this.callers.settle(undefined, new MemcachedError('MC_PROTOCOL', 'multi-get floor: a reply line or a value\'s CRLF was not as expected'))
  }
}
