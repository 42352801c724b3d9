/**
 * Incremental parser of memcached text-protocol replies (protocol.txt).
 * Bytes in, typed events out: no socket, no timers. Replies may arrive split
 * at any byte; the parser keeps at most one partial line (bounded by
 * `maxLine`) and one value in progress (bounded by `maxValue`).
 */
// The global Buffer is a getter on globalThis: hot paths read it as an import.
import { Buffer } from 'node:buffer'

/** The shape of reply the oldest unanswered command expects. */
export type ReplyKind =
  /** get/gets/gat/gats: zero or more VALUE blocks, then END */
  | 'values'
  /** set/add/replace/append/prepend/cas */
  | 'store'
  | 'delete'
  /** incr/decr: a decimal number or NOT_FOUND */
  | 'number'
  | 'touch'
  /** flush_all */
  | 'ok'
  | 'version'
  /** STAT lines, then END */
  | 'stats'

/** One-word replies (protocol.txt, "Storage commands", "Deletion", "Touch"). */
export type Status = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED' | 'OK'

/** The reply that completes the oldest unanswered command. */
export type Reply =
  | { readonly type: 'end' }
  | { readonly type: 'status', readonly status: Status }
  | { readonly type: 'number', readonly value: bigint }
  | { readonly type: 'version', readonly version: string }
  | { readonly type: 'error', readonly kind: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR', readonly message: string }

/** Receives what the parser reads. Implemented by the connection. */
export interface ParserSink {
  /** The reply kind of the oldest unanswered command; undefined when nothing is in flight. */
  expecting (): ReplyKind | undefined
  /**
   * The key that the VALUE line `buf[start, end)` (after `VALUE `) begins
   * with, followed by a space, as the command in flight asked for it, in
   * any order; undefined when it asked for no such key, or that key was
   * already answered (a protocol error).
   */
  valueKey (buf: Buffer, start: number, end: number): string | undefined
  /**
   * One VALUE block of a retrieval reply, `key` as {@link valueKey} returned
   * it. `value` may be a view of the chunk that was fed (no copy): see
   * {@link ReplyParser.takeViewed}.
   */
  onValue (key: string, flags: number, value: Buffer, cas: bigint | undefined): void
  /** One STAT line of a stats reply. */
  onStat (name: string, value: string): void
  /** The line that completes the oldest unanswered command. */
  onReply (reply: Reply): void
  /** Bytes that cannot be a reply to what is in flight; the stream position is lost. */
  onProtocolError (message: string): void
}

/** Bounds that keep hostile input from turning into allocations. */
export interface ParserLimits {
  /** Longest reply line accepted, in bytes, without its CRLF. */
  maxLine: number
  /** Largest VALUE accepted, in bytes. */
  maxValue: number
}

/**
 * Values at least this large may be handed out as views of the chunk they
 * arrived in; smaller ones are copied (into Node's shared pool), so a small
 * value a caller keeps never pins a whole socket read, and the connection can
 * reuse its read buffer whenever no view was taken.
 */
export const VIEW_MIN_BYTES = 512

/**
 * A view is taken only when the chunk fills at least this share of the
 * memory behind it. A view hands that memory to the caller, so the next read
 * needs a fresh buffer: worth it when the read was mostly reply data (a
 * large multi-get), not for one 1 KiB value in a 64 KiB buffer, where each
 * get would allocate 64 KiB and keep the garbage collector busy. Not quite
 * half: a read that filled 64 KiB doubles the buffer, and the next read is
 * often one loopback segment (65,415 to 65,483 bytes), just under half of
 * 128 KiB. At half, those reads (a third of them at 128 gets in flight)
 * had every value copied.
 */
export const VIEW_MIN_FILL = 0.45

type ViewOf = (array: ArrayBufferLike, offset: number, length: number) => Buffer
type ViewConstructor = new (array: ArrayBufferLike, offset: number, length: number) => Buffer

/**
 * A Buffer over `length` bytes of `array` from `offset`. Made with the
 * constructor of the Buffers Node itself returns (Buffer's species, which
 * `subarray` uses): it skips `Buffer.from`'s argument checks, among them a
 * call into C++, about 15 of the 40 ns a view costs. The species is checked
 * once; should a Node version answer with anything else, `Buffer.from` it is.
 */
const viewOf: ViewOf = ((): ViewOf => {
  const species: unknown = (Buffer as unknown as Record<symbol, unknown>)[Symbol.species]
  if (typeof species === 'function' && species !== Buffer) {
    const View = species as ViewConstructor
    const probe: unknown = new View(new ArrayBuffer(3), 1, 1)
    if (Buffer.isBuffer(probe) && Object.getPrototypeOf(probe) === Buffer.prototype && probe.byteOffset === 1 && probe.length === 1) {
      return (array, offset, length) => new View(array, offset, length)
    }
  }
  return (array, offset, length) => Buffer.from(array, offset, length)
})()

const CR = 13
const LF = 10
const SPACE = 32
const END_REPLY: Reply = Object.freeze({ type: 'end' })
const STATUS_REPLIES = new Map<string, Reply>(
  (['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED', 'OK'] as const)
    .map((status) => [status, Object.freeze({ type: 'status', status })])
)
/** The reply of nearly every set, kept at hand: not looked up in a Map per reply. */
const STORED_REPLY = STATUS_REPLIES.get('STORED') as Reply
/** The reply of nearly every touch (a session store renews on each load), kept at hand likewise. */
const TOUCHED_REPLY = STATUS_REPLIES.get('TOUCHED') as Reply

/** Which status words each reply kind may receive (errors are always allowed). */
const ALLOWED_STATUS: Record<ReplyKind, ReadonlySet<string>> = {
  values: new Set(),
  store: new Set(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND']),
  delete: new Set(['DELETED', 'NOT_FOUND']),
  number: new Set(['NOT_FOUND']),
  touch: new Set(['TOUCHED', 'NOT_FOUND']),
  ok: new Set(['OK']),
  version: new Set(),
  stats: new Set()
}

// Methods of Buffer instances, read once: optimized code loads them from a
// Buffer with a generic (uncached) property lookup on every call, since the
// maps on Buffer's prototype chain are not stable.
const indexOf = Buffer.prototype.indexOf
const copy = Buffer.prototype.copy
const typedArraySet = Uint8Array.prototype.set

// The lines of every get and set reply, recognised by comparing bytes with
// constants (a loop over a prefix Buffer would load each of its bytes too).

/** Whether `buf[start, end)` begins with `VALUE `. */
function isValueLine (buf: Buffer, start: number, end: number): boolean {
  return end - start >= 6 && buf[start] === 0x56 && buf[start + 1] === 0x41 && buf[start + 2] === 0x4c &&
    buf[start + 3] === 0x55 && buf[start + 4] === 0x45 && buf[start + 5] === SPACE
}

/** Whether `buf[start, end)` is `END`. */
function isEndLine (buf: Buffer, start: number, end: number): boolean {
  return end - start === 3 && buf[start] === 0x45 && buf[start + 1] === 0x4e && buf[start + 2] === 0x44
}

/** Whether `buf[start, end)` is `STORED`. */
function isStoredLine (buf: Buffer, start: number, end: number): boolean {
  return end - start === 6 && buf[start] === 0x53 && buf[start + 1] === 0x54 && buf[start + 2] === 0x4f &&
    buf[start + 3] === 0x52 && buf[start + 4] === 0x45 && buf[start + 5] === 0x44
}

/** Whether `buf[start, end)` is `TOUCHED`. */
function isTouchedLine (buf: Buffer, start: number, end: number): boolean {
  return end - start === 7 && buf[start] === 0x54 && buf[start + 1] === 0x4f && buf[start + 2] === 0x55 &&
    buf[start + 3] === 0x43 && buf[start + 4] === 0x48 && buf[start + 5] === 0x45 && buf[start + 6] === 0x44
}

/** Parses a decimal integer of at most 20 digits; -1 when it is not one. */
function parseUint (text: string): number {
  if (text.length === 0 || text.length > 20) return -1
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 48 || code > 57) return -1
  }
  return Number(text)
}

/**
 * Where a run of 1 to `maxDigits` ASCII digits starting at `start` ends (at a
 * space or at `end`); -1 when there is no such run.
 */
function digitsEnd (buf: Buffer, start: number, end: number, maxDigits: number): number {
  let pos = start
  while (pos < end && buf[pos] !== SPACE) {
    const byte = buf[pos] as number
    if (byte < 48 || byte > 57 || pos - start >= maxDigits) return -1
    pos++
  }
  return pos === start ? -1 : pos
}

/** The value of the digits in [start, end), at most 15 of them (exact in a double). */
function decimal (buf: Buffer, start: number, end: number): number {
  let value = 0
  for (let pos = start; pos < end; pos++) value = value * 10 + (buf[pos] as number) - 48
  return value
}

/**
 * Where a matched VALUE key ends: after its UTF-16 units when it is ASCII,
 * else after its UTF-8 bytes (a multi-byte key has no space at the first of
 * those positions, since no byte of a multi-byte character is a space).
 */
function valueKeyEnd (buf: Buffer, start: number, key: string): number {
  return buf[start + key.length] === SPACE ? start + key.length : start + Buffer.byteLength(key, 'utf8')
}

export class ReplyParser {
  /** Bytes of a line whose LF has not arrived yet. */
  private partialLine: Buffer | undefined
  private valueKey = ''
  private valueFlags = 0
  private valueCas: bigint | undefined
  /** Size of the value being read; -1 when reading lines. */
  private valueSize = -1
  /** The copy of a value that spans chunks, allocated at its first piece. */
  private value: Buffer | undefined
  /** Bytes of `value` plus its trailing CRLF received so far. */
  private valueFilled = 0
  private failed = false
  /** Whether a value was handed out as a view since the last {@link takeViewed}. */
  private viewed = false
  /** Where the digits read by the last {@link number} end. */
  private numberEnd = 0
  /** The view the last copied value was read through, and the array behind it (not read back through `.buffer`, a slow getter): see {@link copySource}. */
  private keptSource: Uint8Array | undefined
  private keptSourceArray: ArrayBufferLike | undefined

  constructor (private readonly sink: ParserSink, private readonly limits: ParserLimits) {}

  /** Forgets all state: the connection starts a new stream. */
  reset (): void {
    this.partialLine = undefined
    this.value = undefined
    this.valueSize = -1
    this.valueFilled = 0
    this.failed = false
  }

  /**
   * Whether a value was handed out as a view of a chunk fed since the last
   * call: if so, those chunks' memory now belongs to the caller and must not
   * be written again.
   */
  takeViewed (): boolean {
    const viewed = this.viewed
    this.viewed = false
    return viewed
  }

  /** Whether the parser is between replies (no partial line or value). */
  get idle (): boolean {
    return this.partialLine === undefined && this.valueSize < 0
  }

  /** Bytes held between feeds: a partial line plus the value being filled. */
  get buffered (): number {
    return (this.partialLine?.length ?? 0) + (this.value?.length ?? 0)
  }

  /**
   * Parses the first `length` bytes of `chunk` (all of it by default): a
   * socket's read buffer is fed as it is, with the length of the read, so no
   * view of it is made per read.
   */
  feed (chunk: Buffer, length = chunk.length): void {
    if (this.failed) return
    let pos = 0
    if (this.partialLine !== undefined) {
      let lf = indexOf.call(chunk, LF, 0)
      if (lf >= length) lf = -1
      if (lf === -1) {
        this.keepPartial(Buffer.concat([this.partialLine, chunk.subarray(0, length)]))
        return
      }
      const line = Buffer.concat([this.partialLine, chunk.subarray(0, lf + 1)])
      this.partialLine = undefined
      this.consume(line, 0, line.length)
      pos = lf + 1
    }
    this.consume(chunk, pos, length)
  }

  private keepPartial (bytes: Buffer): void {
    if (bytes.length > this.limits.maxLine + 1) {
      this.fail(`reply line longer than ${this.limits.maxLine} bytes`)
      return
    }
    // A copy, so a small partial line does not pin the whole socket chunk.
    this.partialLine = Buffer.from(bytes)
  }

  /** Parses `buf[start, end)`; bytes past `end` are not the stream's. */
  private consume (buf: Buffer, start: number, end: number): void {
    // Read once per chunk, not per value: `buf.buffer` is a C++ call, and
    // `byteOffset` a generic property load.
    const array = buf.buffer
    const offset = buf.byteOffset
    let pos = start
    while (pos < end && !this.failed) {
      if (this.valueSize >= 0) {
        pos = this.fillValue(buf, array, offset, pos, end)
        continue
      }
      const lf = indexOf.call(buf, LF, pos)
      if (lf === -1 || lf >= end) {
        this.keepPartial(buf.subarray(pos, end))
        return
      }
      if (lf - pos > this.limits.maxLine + 1) {
        this.fail(`reply line longer than ${this.limits.maxLine} bytes`)
        return
      }
      if (lf === pos || buf[lf - 1] !== CR) {
        this.fail('reply line not terminated by CRLF')
        return
      }
      this.line(buf, pos, lf - 1)
      pos = lf + 1
    }
  }

  /**
   * Reads the value in progress and the CRLF after it; returns the new
   * position. A value of at least {@link VIEW_MIN_BYTES} that lies whole in
   * this chunk, when the chunk fills most of its memory, is handed out as a
   * view of it (of `array`, its memory, where `buf` starts at `offset`),
   * without a copy; other values are copied, one split across chunks into
   * its own buffer. The chunk's bytes end at `end`.
   */
  private fillValue (buf: Buffer, array: ArrayBufferLike, offset: number, pos: number, end: number): number {
    const size = this.valueSize
    if (this.valueFilled === 0 && end - pos >= size + 2) {
      if (buf[pos + size] !== CR || buf[pos + size + 1] !== LF) {
        this.fail('VALUE data not followed by CRLF')
        return end
      }
      this.valueSize = -1
      let value: Buffer
      if (size >= VIEW_MIN_BYTES && end >= array.byteLength * VIEW_MIN_FILL) {
        value = viewOf(array, offset + pos, size)
        this.viewed = true
      } else {
        value = Buffer.allocUnsafe(size)
        typedArraySet.call(value, this.copySource(array, offset + pos, size))
      }
      this.sink.onValue(this.valueKey, this.valueFlags, value, this.valueCas)
      return pos + size + 2
    }
    const value = this.value ??= Buffer.allocUnsafe(size)
    if (this.valueFilled < size) {
      const copied = copy.call(buf, value, this.valueFilled, pos, Math.min(end, pos + size - this.valueFilled))
      this.valueFilled += copied
      pos += copied
    }
    while (this.valueFilled >= size && this.valueFilled < size + 2 && pos < end) {
      const expected = this.valueFilled === size ? CR : LF
      if (buf[pos] !== expected) {
        this.fail('VALUE data not followed by CRLF')
        return end
      }
      this.valueFilled++
      pos++
    }
    if (this.valueFilled === size + 2) {
      this.value = undefined
      this.valueSize = -1
      this.sink.onValue(this.valueKey, this.valueFlags, value, this.valueCas)
    }
    return pos
  }

  /**
   * A view of `size` bytes of `array` from `at`, to copy a value from
   * (`TypedArray.prototype.set` reads a whole array; `Buffer.prototype.copy`
   * makes the same view inside). The last one is kept and serves again when
   * the next value lies at the same place with the same size, as at one get
   * in flight with keys of one length and values of one size: no object per
   * copy then. It is only ever read, so a value handed out is still a copy
   * of its own.
   */
  private copySource (array: ArrayBufferLike, at: number, size: number): Uint8Array {
    const kept = this.keptSource
    if (kept !== undefined && kept.byteOffset === at && kept.byteLength === size && this.keptSourceArray === array) return kept
    this.keptSourceArray = array
    this.keptSource = new Uint8Array(array, at, size)
    return this.keptSource
  }

  /** One complete line, `end` at its CR. */
  private line (buf: Buffer, start: number, end: number): void {
    const expected = this.sink.expecting()
    if (expected === undefined) {
      this.fail('reply received with no command in flight')
      return
    }
    if (expected === 'values') {
      if (isValueLine(buf, start, end)) return this.valueHeader(buf, start + 6, end)
      if (isEndLine(buf, start, end)) return this.sink.onReply(END_REPLY)
    } else if (expected === 'store') {
      if (isStoredLine(buf, start, end)) return this.sink.onReply(STORED_REPLY)
    } else if (expected === 'touch' && isTouchedLine(buf, start, end)) {
      return this.sink.onReply(TOUCHED_REPLY)
    }
    this.otherLine(buf.toString('latin1', start, end), expected)
  }

  private otherLine (text: string, expected: ReplyKind): void {
    const status = STATUS_REPLIES.get(text)
    if (status !== undefined && ALLOWED_STATUS[expected].has(text)) return this.sink.onReply(status)
    if (text === 'ERROR' || text.startsWith('ERROR ')) return this.error('ERROR', text.slice(6))
    if (text.startsWith('CLIENT_ERROR')) return this.error('CLIENT_ERROR', text.slice(13))
    if (text.startsWith('SERVER_ERROR')) return this.error('SERVER_ERROR', text.slice(13))
    if (expected === 'number') return this.numberLine(text)
    if (expected === 'version' && text.startsWith('VERSION ')) {
      return this.sink.onReply({ type: 'version', version: text.slice(8) })
    }
    if (expected === 'stats') return this.statLine(text)
    this.fail(`unexpected reply ${JSON.stringify(text.slice(0, 64))} to a ${expected} command`)
  }

  private error (kind: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR', message: string): void {
    this.sink.onReply({ type: 'error', kind, message })
  }

  private numberLine (text: string): void {
    // incr/decr answer the new value, an unsigned 64-bit decimal (protocol.txt, "Increment/Decrement").
    if (parseUint(text) < 0) return this.fail(`unexpected reply ${JSON.stringify(text.slice(0, 64))} to incr/decr`)
    const value = BigInt(text)
    if (value > 0xffffffffffffffffn) return this.fail('incr/decr reply exceeds 64 bits')
    this.sink.onReply({ type: 'number', value })
  }

  private statLine (text: string): void {
    if (text === 'END') return this.sink.onReply(END_REPLY)
    if (!text.startsWith('STAT ')) return this.fail(`unexpected reply ${JSON.stringify(text.slice(0, 64))} to stats`)
    const space = text.indexOf(' ', 5)
    if (space === -1) return this.sink.onStat(text.slice(5), '')
    this.sink.onStat(text.slice(5, space), text.slice(space + 1))
  }

  /**
   * `VALUE <key> <flags> <bytes> [<cas unique>]`, starting after `VALUE `.
   * Parsed byte by byte: this runs once per value, the hottest line there is.
   */
  private valueHeader (buf: Buffer, start: number, end: number): void {
    const key = this.sink.valueKey(buf, start, end)
    if (key === undefined) return this.unrequested(buf, start, end)
    const keyEnd = valueKeyEnd(buf, start, key)
    if (buf[keyEnd] !== SPACE) return this.fail('malformed VALUE line')
    const flags = this.number(buf, keyEnd + 1, end)
    const size = flags >= 0 && this.numberEnd < end ? this.number(buf, this.numberEnd + 1, end) : -1
    if (size < 0 || flags > 0xffffffff) return this.fail('malformed VALUE line')
    if (size > this.limits.maxValue) return this.fail(`VALUE of ${size} bytes exceeds the ${this.limits.maxValue}-byte limit`)
    let cas: bigint | undefined
    const sizeEnd = this.numberEnd
    if (sizeEnd < end) {
      if (digitsEnd(buf, sizeEnd + 1, end, 20) !== end) return this.fail('malformed cas in VALUE line')
      cas = end - sizeEnd - 1 <= 15 ? BigInt(decimal(buf, sizeEnd + 1, end)) : BigInt(buf.toString('latin1', sizeEnd + 1, end))
    }
    this.valueKey = key
    this.valueFlags = flags
    this.valueCas = cas
    this.valueSize = size
    this.valueFilled = 0
  }

  private unrequested (buf: Buffer, start: number, end: number): void {
    let keyEnd = start
    while (keyEnd < end && buf[keyEnd] !== SPACE) keyEnd++
    this.fail(`VALUE for key ${JSON.stringify(buf.toString('utf8', start, keyEnd))} that was not requested, or was already answered`)
  }

  /**
   * The value of 1 to 10 ASCII digits at `start`, ending at a space or at
   * `end` (exact in a double); -1 when there are none. Leaves where they end
   * in `numberEnd`, so nothing is allocated to return two values.
   */
  private number (buf: Buffer, start: number, end: number): number {
    let value = 0
    let pos = start
    for (; pos < end; pos++) {
      const byte = buf[pos] as number
      if (byte === SPACE) break
      if (byte < 48 || byte > 57) return -1
      value = value * 10 + byte - 48
    }
    if (pos === start || pos - start > 10) return -1
    this.numberEnd = pos
    return value
  }

  private fail (message: string): void {
    this.failed = true
    this.partialLine = undefined
    this.value = undefined
    this.valueSize = -1
    this.sink.onProtocolError(message)
  }
}
