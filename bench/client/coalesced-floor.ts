/**
 * The coalesced floor: the least any client whose `get(key)` returns a
 * promise does per key when it coalesces the gets of a tick into one
 * `get k1 … kN`, measured through the same loops as the clients. Its batches
 * are replayed by the batched ceiling (raw.ts) right after it, as ours' are,
 * so the ratio it reaches there bounds what any such client reaches against
 * the "0.8x the batched ceiling" target.
 *
 * On top of a socket, only what that API cannot do without:
 *
 * - a promise per get, settled from a FIFO of callers in reply order;
 * - the keys of a tick joined into one request line;
 * - each value handed out as a view of the read buffer (a fresh buffer for
 *   the next read once one is viewed: views cost a tenth of a copy, which
 *   is why ours uses them at depth); a value split across reads is copied;
 * - the batch written at the end of its tick when nothing is in flight or
 *   when a deep pipeline's read filled its buffer, else once per turn of the
 *   event loop: ours' rule (Connection.scheduleFlush).
 *
 * It parses nothing: every key is a hit with a header of known length, so
 * replies are cut at known offsets, and each value's last bytes and each
 * batch's `END` are checked, no more. It validates no key and looks none up
 * in its reply.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { MemcachedError } from '../../src/index.js'
import { MIN_READ_BYTES, readBufferSize } from '../../src/protocol/connection.js'

const RESOLVED = Promise.resolve()
const END = Buffer.from('END\r\n')
/** Ours' threshold for writing per read (MAX_SPLIT_KEYS in the connection). */
const DEEP_PIPELINE = 64

export class CoalescedFloor {
  private asked: string[] = []
  private readonly resolvers: Array<(value: Buffer | undefined) => void> = []
  private readonly rejecters: Array<(error: Error) => void> = []
  private head = 0
  /** Keys of each batch written and not fully answered, oldest first from `batchHead`. */
  private readonly batches: number[] = []
  private batchHead = 0
  private flushScheduled = false
  /** Keys of the batch being read not read yet; -1 between batches. */
  private left = -1
  /** Bytes read of the value block, or of the `END`, being read. */
  private partRead = 0
  /** The value being assembled across reads. */
  private split: Buffer | undefined
  private malformed = false
  private readBuffer = Buffer.allocUnsafeSlow(MIN_READ_BYTES)
  private viewed = false
  private lastRead = 0
  private readFilledBuffer = false
  private readonly blockBytes: number
  private readonly headerBytes: number
  private socket: net.Socket | undefined

  /** Keys of `keyBytes` bytes, each holding `valueBytes` bytes with flags 0. */
  private constructor (keyBytes: number, private readonly valueBytes: number) {
    this.headerBytes = `VALUE ${'k'.repeat(keyBytes)} 0 ${valueBytes}\r\n`.length
    this.blockBytes = this.headerBytes + valueBytes + 2
  }

  static async connect (host: string, port: number, keyBytes: number, valueBytes: number): Promise<CoalescedFloor> {
    const floor = new CoalescedFloor(keyBytes, valueBytes)
    const socket = net.connect({ host, port, noDelay: true, onread: { buffer: floor.nextReadBuffer, callback: (bytes, buffer) => floor.onRead(buffer as Buffer, bytes) } })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    floor.socket = socket
    return floor
  }

  /** One promise per get, the caller's own: no async wrapper around it. */
  get (key: string): Promise<Buffer | undefined> {
    this.asked.push(key)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      const outstanding = this.resolvers.length - this.head
      if (outstanding === 0 || (this.readFilledBuffer && outstanding > DEEP_PIPELINE)) void RESOLVED.then(this.flush)
      else setImmediate(this.flush)
    }
    return new Promise<Buffer | undefined>((resolve, reject) => {
      this.resolvers.push(resolve)
      this.rejecters.push(reject)
    })
  }

  close (): void {
    this.socket?.destroy()
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const asked = this.asked
    if (asked.length === 0) return
    this.asked = []
    this.batches.push(asked.length)
    this.socket?.write(Buffer.from(`get ${asked.join(' ')}\r\n`, 'latin1'))
  }

  private readonly nextReadBuffer = (): Buffer => {
    const size = readBufferSize(this.readBuffer.length, this.lastRead)
    if (this.viewed || size !== this.readBuffer.length) this.readBuffer = Buffer.allocUnsafeSlow(size)
    this.viewed = false
    return this.readBuffer
  }

  private onRead (read: Buffer, bytes: number): true {
    this.lastRead = bytes
    this.readFilledBuffer = bytes === read.length
    for (let at = 0; at < bytes;) {
      if (this.left === -1) this.left = this.batches[this.batchHead++] as number
      if (this.left === 0) at += this.readEnd(read, at, bytes)
      else if (this.partRead === 0 && bytes - at >= this.blockBytes) at += this.viewValue(read, at)
      else at += this.copyValue(read, at, bytes)
    }
    if (this.batchHead > 1024 && this.batchHead * 2 > this.batches.length) {
      this.batches.splice(0, this.batchHead)
      this.batchHead = 0
    }
    return true
  }

  /** A whole value block at `at`: hands out a view of its value. */
  private viewValue (read: Buffer, at: number): number {
    const end = at + this.blockBytes
    if (read[end - 2] !== 13 || read[end - 1] !== 10) this.malformed = true
    this.viewed = true
    this.valueRead(read.subarray(at + this.headerBytes, end - 2))
    return this.blockBytes
  }

  /** Part of a value block split across reads: copies the value's part of it. */
  private copyValue (read: Buffer, at: number, bytes: number): number {
    const take = Math.min(bytes - at, this.blockBytes - this.partRead)
    const value = (this.split ??= Buffer.allocUnsafe(this.valueBytes))
    const from = Math.max(this.partRead, this.headerBytes)
    const to = Math.min(this.partRead + take, this.headerBytes + this.valueBytes)
    if (to > from) read.copy(value, from - this.headerBytes, at + from - this.partRead, at + to - this.partRead)
    for (let i = Math.max(this.partRead, this.blockBytes - 2); i < this.partRead + take; i++) {
      if (read[at + i - this.partRead] !== (i === this.blockBytes - 2 ? 13 : 10)) this.malformed = true
    }
    this.partRead += take
    if (this.partRead === this.blockBytes) {
      this.partRead = 0
      this.split = undefined
      this.valueRead(value)
    }
    return take
  }

  /** Checks the batch's `END\r\n`, which may be split across reads. */
  private readEnd (read: Buffer, at: number, bytes: number): number {
    const take = Math.min(bytes - at, END.length - this.partRead)
    for (let i = 0; i < take; i++) if (read[at + i] !== END[this.partRead + i]) this.malformed = true
    this.partRead += take
    if (this.partRead === END.length) {
      this.partRead = 0
      this.left = -1
    }
    return take
  }

  private valueRead (value: Buffer): void {
    this.left--
    const index = this.head++
    const resolve = this.resolvers[index] as (value: Buffer | undefined) => void
    const reject = this.rejecters[index] as (error: Error) => void
    if (this.head > 1024 && this.head * 2 > this.resolvers.length) {
      this.resolvers.splice(0, this.head)
      this.rejecters.splice(0, this.head)
      this.head = 0
    }
    if (this.malformed) {
      this.malformed = false
      reject(new MemcachedError('MC_PROTOCOL', 'coalesced floor: a value block did not end with \\r\\n, or a batch with END'))
    } else {
      resolve(value)
    }
  }
}
