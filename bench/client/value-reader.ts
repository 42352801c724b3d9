/**
 * What the floors of gets read off a socket, and no more than any client
 * must: each reply line's `END`, or the size a VALUE header ends with (no
 * client knows where a value ends before reading that). No key is compared
 * and no flags are read: every key asked is trusted to be answered, in
 * order. A value is a view of the read buffer (a fresh buffer for the next
 * read once one is viewed) when its read fills enough of the buffer, else a
 * copy; a value split across reads is copied. The reads size their buffer
 * as ours do (`readBufferSize`), and requests are written when ours writes
 * its own.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { MIN_READ_BYTES, readBufferSize } from '../../src/protocol/connection.js'

const RESOLVED = Promise.resolve()
const END = Buffer.from('END\r\n')
const EMPTY = Buffer.alloc(0)
/** Ours' threshold for writing per read (MAX_SPLIT_KEYS in the connection). */
const DEEP_PIPELINE = 64

export abstract class ValueReader {
  /** A reply line or a value's CRLF was not as expected since the last caller settled. */
  protected malformed = false
  private flushScheduled = false
  /** Size of the value being read; -1 while reading lines. */
  private size = -1
  /** Bytes of the value being read and its CRLF read so far, when split across reads. */
  private filled = 0
  /** The value being assembled across reads. */
  private split: Buffer | undefined
  /** The start of a line split across reads. */
  private partial: Buffer | undefined
  private readBuffer = Buffer.allocUnsafeSlow(MIN_READ_BYTES)
  private viewed = false
  private lastRead = 0
  private readFilledBuffer = false
  /** Whether the values of the current read are views (else copies). */
  private viewing = false
  private socket: net.Socket | undefined

  /**
   * @param viewMinFill the share of its buffer a read must fill for its
   * values to be views; below it they are copied into Node's pool. 0 (every
   * value a view) for single gets, where it beat ours' rule; ours' 0.45
   * (parser.ts) for 100-key gets, where a view from every read costs a fresh
   * buffer of up to 256 KiB per read.
   * @param readsKeys hands each VALUE line's key to {@link keyRead} (the
   * contract floor, which checks it against the key sent).
   */
  constructor (private readonly viewMinFill: number, protected readonly readsKeys = false) {}

  /** A value read, in reply order. */
  protected abstract valueRead (value: Buffer): void
  /** An `END` line read (`malformed` says whether it was one). */
  protected abstract endRead (): void
  /** Writes what was asked since the last flush. */
  protected abstract flush (): void

  /** With `readsKeys`: whether the VALUE line `line[start, end)`, from its key on, names the key expected next. */
  protected keyRead (_line: Buffer, _start: number, _end: number): boolean {
    return true
  }

  /** Connects this reader to memcached; resolves with it once connected. */
  protected async connect (host: string, port: number): Promise<this> {
    const socket = net.connect({ host, port, noDelay: true, onread: { buffer: this.nextReadBuffer, callback: (bytes, buffer) => this.onRead(buffer as Buffer, bytes) } })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    this.socket = socket
    return this
  }

  close (): void {
    this.socket?.destroy()
  }

  protected write (request: Buffer): void {
    this.socket?.write(request)
  }

  /**
   * Schedules {@link flush} as ours schedules its writes
   * (Connection.scheduleFlush): at the end of the tick when nothing is in
   * flight or a deep pipeline's read filled its buffer, else at the end of
   * the event loop's turn.
   */
  protected scheduleFlush (outstanding: number): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    if (outstanding === 0 || (this.readFilledBuffer && outstanding > DEEP_PIPELINE)) void RESOLVED.then(this.flushNow)
    else setImmediate(this.flushNow)
  }

  private readonly flushNow = (): void => {
    this.flushScheduled = false
    this.flush()
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
    this.viewing = bytes >= read.length * this.viewMinFill
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
      this.endRead()
      return next
    }
    let size = 0
    let digit = lf - 2
    for (let scale = 1; digit > start && line[digit] !== 32; digit--, scale *= 10) size += ((line[digit] as number) - 48) * scale
    if (line[start] !== 86 || line[lf - 1] !== 13 || digit === lf - 2) this.malformed = true
    else if (this.readsKeys && !this.keyRead(line, start + 6, lf)) this.malformed = true
    this.size = size
    this.filled = 0
    return next
  }

  /** A whole value and its CRLF at `at`: hands out a view of it, or a copy (see `viewMinFill`). */
  private viewValue (read: Buffer, at: number): number {
    const end = at + this.size
    if (read[end] !== 13 || read[end + 1] !== 10) this.malformed = true
    this.size = -1
    if (this.viewing) {
      this.viewed = true
      this.valueRead(read.subarray(at, end))
    } else {
      const value = Buffer.allocUnsafe(end - at)
      read.copy(value, 0, at, end)
      this.valueRead(value)
    }
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
}
