/**
 * The promise floor: the least any client whose `get` returns a promise of a
 * value the caller may keep does per get, measured through the same loops as
 * the clients. Under it is the ceiling's socket (one reused read buffer,
 * pre-built requests); on top, only what that API cannot do without:
 *
 * - a promise per get, settled from a FIFO of callers in reply order;
 * - a copy of each value into a Buffer of its own (a view of the read buffer
 *   would be overwritten by the next read);
 * - the gets of one tick written together: at the end of the tick when
 *   nothing is in flight, else once per turn of the event loop.
 *
 * It parses nothing (replies have a known length), checks only each reply's
 * last bytes, as the ceiling does, and looks no key up in its reply. So no
 * client with a promise per get can do less; the ratio it reaches against
 * the ceiling bounds what any such client can reach.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { MemcachedError } from '../../src/index.js'

const END = Buffer.from('END\r\n')
const RESOLVED = Promise.resolve()

export class PromiseFloor {
  private readonly requests = new Map<string, Buffer>()
  private pending: Buffer[] = []
  private readonly resolvers: Array<(value: Buffer) => void> = []
  private readonly rejecters: Array<(error: Error) => void> = []
  private head = 0
  private flushScheduled = false
  /** Bytes of the current reply read so far, and its value. */
  private replyRead = 0
  private value = Buffer.allocUnsafe(0)
  /** The current reply's last bytes differ from `END\r\n`. */
  private malformed = false
  private readonly headerBytes: number
  private readonly replyBytes: number

  private constructor (private readonly socket: net.Socket, keyBytes: number, private readonly valueBytes: number) {
    this.headerBytes = `VALUE ${'k'.repeat(keyBytes)} 0 ${valueBytes}\r\n`.length
    this.replyBytes = this.headerBytes + valueBytes + 2 + END.length
  }

  /** Connects to memcached; every key asked must be `keyBytes` long and hold `valueBytes` with flags 0. */
  static async connect (host: string, port: number, keyBytes: number, valueBytes: number): Promise<PromiseFloor> {
    // The socket's read callback needs the floor, which needs the socket.
    const created: { floor?: PromiseFloor } = {}
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: (bytes, buffer) => { created.floor?.onRead(buffer as Buffer, bytes); return true } }
    })
    const floor = created.floor = new PromiseFloor(socket, keyBytes, valueBytes)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return floor
  }

  /** One promise per get, the caller's own: no async wrapper around it. */
  get (key: string): Promise<Buffer> {
    const request = this.requests.get(key) ?? this.build(key)
    this.pending.push(request)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      if (this.head === this.resolvers.length) void RESOLVED.then(this.flush)
      else setImmediate(this.flush)
    }
    return new Promise<Buffer>((resolve, reject) => {
      this.resolvers.push(resolve)
      this.rejecters.push(reject)
    })
  }

  private build (key: string): Buffer {
    if (`VALUE ${key} 0 ${this.valueBytes}\r\n`.length !== this.headerBytes) throw new Error(`promise floor: key ${key} is not ${this.headerBytes - `VALUE  0 ${this.valueBytes}\r\n`.length} bytes`)
    const request = Buffer.from(`get ${key}\r\n`)
    this.requests.set(key, request)
    return request
  }

  close (): void {
    this.socket.destroy()
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const pending = this.pending
    if (pending.length === 0) return
    this.pending = []
    this.socket.write(pending.length === 1 ? pending[0] as Buffer : Buffer.concat(pending))
  }

  private onRead (read: Buffer, bytes: number): void {
    for (let at = 0; at < bytes;) {
      if (this.replyRead === 0) this.value = Buffer.allocUnsafe(this.valueBytes)
      const take = Math.min(bytes - at, this.replyBytes - this.replyRead)
      this.copyValue(read, at, take)
      this.checkEnd(read, at, take)
      this.replyRead += take
      at += take
      if (this.replyRead === this.replyBytes) this.settle()
    }
  }

  /** Copies the part of the value among the `take` bytes of the reply at `at` in `read`. */
  private copyValue (read: Buffer, at: number, take: number): void {
    const from = Math.max(this.replyRead, this.headerBytes)
    const to = Math.min(this.replyRead + take, this.headerBytes + this.valueBytes)
    if (to > from) read.copy(this.value, from - this.headerBytes, at + from - this.replyRead, at + to - this.replyRead)
  }

  /** Compares the part of the reply's last five bytes among the `take` bytes at `at` with `END\r\n`. */
  private checkEnd (read: Buffer, at: number, take: number): void {
    const endStart = this.replyBytes - END.length
    for (let i = Math.max(this.replyRead, endStart); i < this.replyRead + take; i++) {
      if (read[at + i - this.replyRead] !== END[i - endStart]) this.malformed = true
    }
  }

  private settle (): void {
    const index = this.head++
    const resolve = this.resolvers[index] as (value: Buffer) => void
    const reject = this.rejecters[index] as (error: Error) => void
    if (this.head > 1024 && this.head * 2 > this.resolvers.length) {
      this.resolvers.splice(0, this.head)
      this.rejecters.splice(0, this.head)
      this.head = 0
    }
    this.replyRead = 0
    if (this.malformed) {
      this.malformed = false
      reject(new MemcachedError('MC_PROTOCOL', 'promise floor: a reply did not end with END'))
    } else {
      resolve(this.value)
    }
  }
}
