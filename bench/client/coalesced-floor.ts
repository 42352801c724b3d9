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
 * Of each reply line it reads only what no client can do without: whether
 * it is `END`, and the size at the end of a VALUE header (a client cannot
 * know where a value ends before reading it). It checks each value's CRLF,
 * validates no key, reads no flags and looks no key up in its reply: it
 * trusts that every key asked is answered, in order.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { MemcachedError } from '../../src/index.js'
import { MIN_READ_BYTES, readBufferSize } from '../../src/protocol/connection.js'
import { CallerQueue } from './callers.js'

const RESOLVED = Promise.resolve()
const END = Buffer.from('END\r\n')
const EMPTY = Buffer.alloc(0)
/** Ours' threshold for writing per read (MAX_SPLIT_KEYS in the connection). */
const DEEP_PIPELINE = 64

export class CoalescedFloor {
  private asked: string[] = []
  private readonly callers = new CallerQueue()
  private flushScheduled = false
  /** Size of the value being read; -1 while reading lines. */
  private size = -1
  /** Bytes of the value being read and its CRLF read so far, when split across reads. */
  private filled = 0
  /** The value being assembled across reads. */
  private split: Buffer | undefined
  /** The start of a line split across reads. */
  private partial: Buffer | undefined
  private malformed = false
  private readBuffer = Buffer.allocUnsafeSlow(MIN_READ_BYTES)
  private viewed = false
  private lastRead = 0
  private readFilledBuffer = false
  private socket: net.Socket | undefined

  static async connect (host: string, port: number): Promise<CoalescedFloor> {
    const floor = new CoalescedFloor()
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
      const outstanding = this.callers.size
      if (outstanding === 0 || (this.readFilledBuffer && outstanding > DEEP_PIPELINE)) void RESOLVED.then(this.flush)
      else setImmediate(this.flush)
    }
    return this.callers.add()
  }

  close (): void {
    this.socket?.destroy()
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const asked = this.asked
    if (asked.length === 0) return
    this.asked = []
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
      if (this.size < 0) at = this.readLine(read, at, bytes)
      else if (this.filled === 0 && bytes - at >= this.size + 2) at = this.viewValue(read, at)
      else at = this.copyValue(read, at, bytes)
    }
    return true
  }

  /**
   * The line at `at`: `END` or a VALUE header, whose last field is the size
   * of the value after it (read backwards from the CR; nothing else of the
   * line is looked at). A line split across reads is put together first.
   */
  private readLine (read: Buffer, at: number, bytes: number): number {
    let lf = read.indexOf(10, at)
    if (lf === -1 || lf >= bytes) {
      this.partial = Buffer.concat([this.partial ?? EMPTY, read.subarray(at, bytes)])
      return bytes
    }
    let line = read
    let start = at
    const next = lf + 1
    if (this.partial !== undefined) {
      line = Buffer.concat([this.partial, read.subarray(at, next)])
      this.partial = undefined
      start = 0
      lf = line.length - 1
    }
    if (line[start] === 69) {
      if (lf - start !== END.length - 1 || line.compare(END, 0, END.length, start, lf + 1) !== 0) this.malformed = true
      return next
    }
    let size = 0
    let digit = lf - 2
    for (let scale = 1; digit > start && line[digit] !== 32; digit--, scale *= 10) size += ((line[digit] as number) - 48) * scale
    if (line[start] !== 86 || line[lf - 1] !== 13 || digit === lf - 2) this.malformed = true
    this.size = size
    this.filled = 0
    return next
  }

  /** A whole value and its CRLF at `at`: hands out a view of it. */
  private viewValue (read: Buffer, at: number): number {
    const end = at + this.size
    if (read[end] !== 13 || read[end + 1] !== 10) this.malformed = true
    this.viewed = true
    this.size = -1
    this.valueRead(read.subarray(at, end))
    return end + 2
  }

  /** Part of a value (and its CRLF) split across reads: copies it into a value of its own. */
  private copyValue (read: Buffer, at: number, bytes: number): number {
    const size = this.size
    const value = (this.split ??= Buffer.allocUnsafe(size))
    if (this.filled < size) {
      const copied = read.copy(value, this.filled, at, Math.min(bytes, at + size - this.filled))
      this.filled += copied
      at += copied
    }
    for (; this.filled < size + 2 && at < bytes; this.filled++, at++) {
      if (read[at] !== (this.filled === size ? 13 : 10)) this.malformed = true
    }
    if (this.filled === size + 2) {
      this.split = undefined
      this.size = -1
      this.filled = 0
      this.valueRead(value)
    }
    return at
  }

  private valueRead (value: Buffer): void {
    if (!this.malformed) return this.callers.settle(value)
    this.malformed = false
    this.callers.settle(undefined, new MemcachedError('MC_PROTOCOL', 'coalesced floor: a reply line or a value\'s CRLF was not as expected'))
  }
}
