/**
 * Request encoding and the checks that keep bad input off the wire.
 * Request lines are built as strings (keys are validated first, so nothing a
 * caller passes can add a line); values never are: they are copied into the
 * outgoing batch as bytes.
 */
import { Buffer } from 'node:buffer'
import { MemcachedError } from './errors.js'
import type { Reply, ReplyKind } from './parser.js'

/** Longest key memcached accepts, in bytes (protocol.txt, "Keys"). */
export const MAX_KEY_BYTES = 250

/** TTLs above this many seconds are absolute Unix times to memcached (protocol.txt, "Expiration times"). */
export const RELATIVE_TTL_LIMIT = 60 * 60 * 24 * 30

const CRLF = '\r\n'
const EMPTY = Buffer.alloc(0)

// Buffer methods read once: optimized code loads a method from a Buffer with
// a generic (uncached) lookup on every call, as the maps on Buffer's
// prototype chain are not stable. Hot paths call these instead.
const write = Buffer.prototype.write
const subarray = Buffer.prototype.subarray
const typedArraySet = Uint8Array.prototype.set

/**
 * Printable ASCII (0x21-0x7e) only, the keys nearly every app uses. A
 * regular expression, not a loop of `charCodeAt`: keys are usually built by
 * concatenation, and a concatenated string is read through an indirection on
 * every `charCodeAt`, where the expression reads it flattened once. For a
 * concatenated 14-character key, 39 against 68 ns (a flat one: 38 against
 * 31); for a 69-character session key, 65 against 325 (flat: 70 against 150).
 */
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/

/**
 * Why `key` cannot be a memcached key, or undefined when it can. memcached
 * splits a command line on spaces and ends it at LF, and accepts any other
 * byte: so whitespace and control characters are ours to refuse.
 */
export function keyProblem (key: unknown): string | undefined {
  if (typeof key !== 'string') return 'a key must be a string'
  if (key.length === 0) return 'a key must not be empty'
  if (PRINTABLE_ASCII.test(key)) return key.length > MAX_KEY_BYTES ? `a key must be at most ${MAX_KEY_BYTES} bytes` : undefined
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    if (code <= 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029) {
      return 'a key must not contain whitespace or control characters'
    }
  }
  // A lone surrogate would be sent as U+FFFD: two different keys, one item.
  if (!key.isWellFormed()) return 'a key must be well-formed UTF-16 (no lone surrogates)'
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `a key must be at most ${MAX_KEY_BYTES} bytes of UTF-8`
  return undefined
}

/** The error for a key that {@link keyProblem} refused. */
export function invalidKey (key: unknown, problem: string): MemcachedError {
  const shown = typeof key === 'string' ? JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key) : typeof key
  return new MemcachedError('MC_INVALID_KEY', `invalid key ${shown}: ${problem}`)
}

/**
 * The protocol's exptime for a relative TTL in seconds: 0 is "never", up to
 * 30 days it is relative, above it memcached reads an absolute Unix time.
 */
export function exptime (ttl: number, nowMs?: number): number {
  if (ttl <= RELATIVE_TTL_LIMIT) return ttl
  return Math.floor((nowMs ?? Date.now()) / 1000) + ttl
}

/** Why `ttl` cannot be used, or undefined. */
export function ttlProblem (ttl: unknown): string | undefined {
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 0) {
    return 'ttl must be a whole number of seconds >= 0'
  }
  return undefined
}

/** Why `flags` cannot be used, or undefined: memcached stores them as an unsigned 32-bit integer. */
export function flagsProblem (flags: unknown): string | undefined {
  if (typeof flags !== 'number' || !Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) {
    return 'flags must be an integer from 0 to 4294967295'
  }
  return undefined
}

/** The byte length of a value, or -1 when it is neither a string nor a Buffer. */
export function valueSize (value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8')
  if (Buffer.isBuffer(value)) return value.length
  if (value instanceof Uint8Array) return value.byteLength
  return -1
}

/** A request line kept as fields and written straight into the batch, never built as a string. */
export interface FieldLine {
  /** The command's verb, for traces. */
  readonly verb: string
  writeTo: (batch: RequestBatch) => void
}

/**
 * `<verb> <key> <flags> <exptime> <bytes> [<cas>]\r\n` (protocol.txt,
 * "Storage commands"): the hottest request line.
 */
export class StorageLine implements FieldLine {
  constructor (
    readonly verb: 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas',
    readonly key: string,
    readonly flags: number,
    readonly expiry: number,
    readonly bytes: number,
    readonly cas: bigint | undefined
  ) {}

  writeTo (batch: RequestBatch): void { batch.storage(this) }
}

/**
 * `touch <key> <exptime>\r\n` (protocol.txt, "Touch"): a session store
 * sends one with nearly every load.
 */
export class TouchLine implements FieldLine {
  readonly verb = 'touch'
  constructor (readonly key: string, readonly expiry: number) {}

  writeTo (batch: RequestBatch): void { batch.touch(this) }
}

/** Writes an ASCII word at `pos`, byte by byte (for a few bytes, cheaper than any copy call); returns the position after it. */
function writeAscii (buf: Buffer, pos: number, word: string): number {
  for (let i = 0; i < word.length; i++) buf[pos + i] = word.charCodeAt(i)
  return pos + word.length
}

/** Writes `value` (a non-negative integer) in decimal at `pos`; returns the position after it. */
function writeDecimal (buf: Buffer, pos: number, value: number): number {
  let digits = 1
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++
  for (let at = pos + digits - 1, rest = value; at >= pos; at--, rest = Math.floor(rest / 10)) buf[at] = 48 + (rest % 10)
  return pos + digits
}

/**
 * Keys longer than this many UTF-16 units are written by Buffer's native
 * `write`, shorter ones byte by byte: the native call costs about as much as
 * 30 characters copied in JS (80 ns against 2.7 ns per character). A session
 * key (`sess:` and 64 hex digits) took 190 ns byte by byte, 85 natively, and
 * each read-write request writes it three times.
 */
const KEY_UNITS_COPIED = 32

/** Writes a validated key at `pos` (ASCII byte by byte, else UTF-8); returns the position after it. */
function writeKey (buf: Buffer, pos: number, key: string): number {
  if (key.length > KEY_UNITS_COPIED) return pos + write.call(buf, key, pos, 'utf8')
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    if (code >= 0x80) return pos + write.call(buf, key, pos, 'utf8')
    buf[pos + i] = code
  }
  return pos + key.length
}

/** `get|gets <key>*\r\n`. */
export function retrievalLine (verb: 'get' | 'gets', keys: readonly string[]): string {
  return keys.length === 1 ? `${verb} ${keys[0]}${CRLF}` : `${verb} ${keys.join(' ')}${CRLF}`
}

/** `gat|gats <exptime> <key>*\r\n`. */
export function touchRetrievalLine (verb: 'gat' | 'gats', expiry: number, keys: readonly string[]): string {
  return `${verb} ${expiry} ${keys.join(' ')}${CRLF}`
}

/** Any other one-line command: words joined by spaces. */
export function commandLine (...words: ReadonlyArray<string | number | bigint>): string {
  return `${words.join(' ')}${CRLF}`
}

const SCRATCH_BYTES = 64 * 1024
/** Flushes up to this many bytes, written from the start of the scratch buffer, go out through a view kept for their length. */
const KEPT_VIEW_BYTES = 512
/** Values at least this large go to the socket as they are instead of being copied. */
const ZERO_COPY_BYTES = 64 * 1024

/**
 * The bytes of one flush: request lines and small values are copied into one
 * scratch buffer, so a tick's requests leave in a single write; large values
 * are passed through uncopied.
 */
export class RequestBatch {
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES)
  /** Where the bytes not yet cut into a chunk start in `scratch`. */
  private start = 0
  /** Where the next byte goes in `scratch`. */
  private used = 0
  private chunks: Buffer[] = []
  private total = 0
  /**
   * Views of `scratch` from its start, by length, made once each: a flush
   * that {@link rewind} started at the start of `scratch` is written through
   * one of them instead of a new Buffer object per write.
   */
  private readonly keptViews: Array<Buffer | undefined> = new Array<Buffer | undefined>(KEPT_VIEW_BYTES + 1).fill(undefined)

  /**
   * Starts the next flush at the start of the scratch buffer again: for a
   * caller that holds none of the bytes taken before any more, so they may
   * be overwritten: its socket wrote them all, and no request in flight
   * keeps them (see {@link retrieval}). Otherwise the bytes move on through
   * the buffer, and one written is never written again.
   */
  rewind (): void {
    if (this.used === this.start && this.chunks.length === 0) {
      this.start = 0
      this.used = 0
    }
  }

  /** Bytes written since the last {@link take}. */
  get size (): number { return this.total }

  /** Appends a request line (ASCII, or UTF-8 keys). */
  line (text: string): void {
    this.reserve(text.length * 3)
    const written = write.call(this.scratch, text, this.used, 'utf8')
    this.used += written
    this.total += written
  }

  /** Appends a value and its terminating CRLF. */
  value (data: Buffer | Uint8Array | string, bytes: number): void {
    if (bytes >= ZERO_COPY_BYTES && typeof data !== 'string') {
      this.cut()
      this.chunks.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength))
      this.total += bytes
    } else {
      this.reserve(bytes)
      if (typeof data === 'string') write.call(this.scratch, data, this.used, 'utf8')
      else typedArraySet.call(this.scratch, data, this.used)
      this.used += bytes
      this.total += bytes
    }
    this.reserve(2)
    this.scratch[this.used++] = 13
    this.scratch[this.used++] = 10
    this.total += 2
  }

  /**
   * Appends `get|gets <key>*\r\n`; returns the bytes of the keys as written
   * (space-separated), for {@link SentKeys} to match the reply against. They
   * stay as they are: written bytes are never overwritten.
   */
  retrieval (verb: 'get' | 'gets', keys: readonly string[]): Buffer {
    let units = 0
    for (const key of keys) units += key.length
    // At most 3 bytes of UTF-8 per UTF-16 unit; one space per key; CRLF.
    this.reserve(verb.length + units * 3 + keys.length + 2)
    const line = keys.length === 1 ? keys[0] as string : keys.join(' ')
    const buf = this.scratch
    let pos = writeAscii(buf, this.used, verb)
    buf[pos++] = 32
    const keysStart = pos
    pos += write.call(buf, line, pos, 'utf8')
    const written = subarray.call(buf, keysStart, pos)
    this.endLine(pos)
    return written
  }

  /** Appends `get|gets <key>\r\n` for one key: a request that matches its reply against the key itself needs no bytes back. */
  retrievalOfKey (verb: 'get' | 'gets', key: string): void {
    // At most 3 bytes of UTF-8 per UTF-16 unit; a space; CRLF.
    this.reserve(verb.length + key.length * 3 + 3)
    const buf = this.scratch
    let pos = writeAscii(buf, this.used, verb)
    buf[pos++] = 32
    pos = writeKey(buf, pos, key)
    this.endLine(pos)
  }

  /** Ends the line being written at `pos` in `scratch` with CRLF, and counts it in. */
  private endLine (pos: number): void {
    this.scratch[pos] = 13
    this.scratch[pos + 1] = 10
    this.total += pos + 2 - this.used
    this.used = pos + 2
  }

  /** Appends a storage command's line. */
  storage (line: StorageLine): void {
    // verb, at most 3 bytes of UTF-8 per UTF-16 unit of the key, three 10-digit numbers, a 20-digit cas, spaces, CRLF
    this.reserve(line.verb.length + line.key.length * 3 + 60)
    const buf = this.scratch
    let pos = writeAscii(buf, this.used, line.verb)
    buf[pos++] = 32
    pos = writeKey(buf, pos, line.key)
    buf[pos++] = 32
    pos = writeDecimal(buf, pos, line.flags)
    buf[pos++] = 32
    pos = writeDecimal(buf, pos, line.expiry)
    buf[pos++] = 32
    pos = writeDecimal(buf, pos, line.bytes)
    if (line.cas !== undefined) {
      buf[pos++] = 32
      pos += write.call(buf, line.cas.toString(), pos, 'latin1')
    }
    this.endLine(pos)
  }

  /** Appends a touch command's line. */
  touch (line: TouchLine): void {
    // `touch `, at most 3 bytes of UTF-8 per UTF-16 unit of the key, a space, a 10-digit exptime, CRLF
    this.reserve(line.key.length * 3 + 20)
    const buf = this.scratch
    let pos = writeAscii(buf, this.used, 'touch ')
    pos = writeKey(buf, pos, line.key)
    buf[pos++] = 32
    pos = writeDecimal(buf, pos, line.expiry)
    this.endLine(pos)
  }

  /**
   * The bytes to write, in order, and the batch starts empty again: one
   * Buffer in the usual case (the whole flush in the scratch buffer, so no
   * array is allocated), several when large values or a full scratch buffer
   * cut it, undefined when nothing was added.
   */
  take (): Buffer | Buffer[] | undefined {
    this.total = 0
    if (this.chunks.length === 0) {
      const used = this.used
      if (used === this.start) return undefined
      if (this.start === 0 && used <= KEPT_VIEW_BYTES) {
        this.start = used
        return this.keptViews[used] ??= subarray.call(this.scratch, 0, used)
      }
      const only: Buffer = subarray.call(this.scratch, this.start, used)
      this.start = used
      return only
    }
    this.cut()
    const chunks = this.chunks
    this.chunks = []
    return chunks
  }

  /** Ends the current scratch region; the socket now owns those bytes, and they are never written again. */
  private cut (): void {
    if (this.used === this.start) return
    this.chunks.push(subarray.call(this.scratch, this.start, this.used))
    this.start = this.used
  }

  private reserve (bytes: number): void {
    if (this.scratch.length - this.used >= bytes) return
    this.cut()
    this.scratch = Buffer.allocUnsafe(Math.max(SCRATCH_BYTES, bytes))
    this.keptViews.fill(undefined)
    this.start = 0
    this.used = 0
  }
}

/** One VALUE of a retrieval reply. */
export interface Item {
  readonly key: string
  readonly value: Buffer
  /** Unsigned 32-bit flags stored with the item. */
  readonly flags: number
  /** The item's cas unique, for gets/gats. */
  readonly cas: bigint | undefined
}

/**
 * One request on the wire, as the connection's queue sees it: it encodes
 * itself at flush time (so a request that times out while queued is simply
 * dropped) and settles its caller(s) from the reply.
 */
export interface Request {
  readonly kind: ReplyKind
  /** Callers this request answers: more than one for coalesced gets. */
  readonly callers: number
  /** When the oldest caller times out, in `performance.now()` ms. */
  deadline: number
  encode (batch: RequestBatch): void
  /**
   * The key the VALUE line `buf[start, end)` (after `VALUE `) begins with, as
   * this request's caller spelled it; undefined when it names no key this
   * request asked for.
   */
  claim (buf: Buffer, start: number, end: number): string | undefined
  /** A VALUE block for a key that {@link claim} returned. */
  onValue (key: string, value: Buffer, flags: number, cas: bigint | undefined): void
  onStat (name: string, value: string): void
  complete (reply: Reply, server: string): void
  fail (error: MemcachedError): void
  /**
   * A multi-key read as single-key requests for its keys not answered yet,
   * forgetting them here; undefined when it asks one key at most.
   */
  split? (): Request[] | undefined
}

/**
 * Whether the line `buf[start, end)` begins with the UTF-8 bytes of `key`
 * and a space: the key of a VALUE line, matched without first looking for
 * where it ends.
 */
export function isKeyAt (buf: Buffer, start: number, end: number, key: string): boolean {
  // UTF-8 never takes fewer bytes than UTF-16 code units.
  const space = start + key.length
  if (space >= end) return false
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    if (code >= 0x80) return isUtf8KeyAt(buf, start, end, key)
    if (buf[start + i] !== code) return false
  }
  return buf[space] === 32
}

function isUtf8KeyAt (buf: Buffer, start: number, end: number, key: string): boolean {
  const bytes = Buffer.from(key, 'utf8')
  const space = start + bytes.length
  return space < end && buf[space] === 32 && bytes.equals(buf.subarray(start, space))
}

/**
 * The keys of a multi-key retrieval, in the order they were sent, matched
 * against the VALUE lines of the reply. memcached answers in that order,
 * misses left out, so the fast path looks at the cursor and further along,
 * comparing the VALUE's key with the bytes that were sent for it (array to
 * array: cheaper than reading the caller's strings, and the same for any
 * UTF-8), so no key is decoded and none hashed. Proxies answer in another
 * order (twemproxy: backend by backend), so a VALUE may also name a key
 * passed over earlier; each sent key is answered at most once, which is
 * what makes a key answered twice, or never asked for, a protocol error.
 */
export class SentKeys {
  /** Position in `keys` of the next key a VALUE may name in request order. */
  private next = 0
  /** The keys' bytes as written, space-separated; empty until then. */
  private written: Buffer = EMPTY
  /** Where the key at `next` starts in `written`. */
  private at = 0
  /** Positions before `next` that the cursor passed over unanswered (misses, or answers still to come out of order). */
  private passed: number[] | undefined
  /**
   * Once a reply leaves request order: the positions of every key not
   * answered yet, by key (a key sent twice may be answered twice).
   */
  private unanswered: Map<string, number[]> | undefined

  /** Position in `keys` of the key the last successful {@link claim} returned. */
  claimed = -1

  /** `keys` may still grow until the request is written (a coalesced batch). */
  constructor (readonly keys: readonly string[]) {}

  /** Writes the request line and keeps the keys' bytes to match replies against. */
  encode (batch: RequestBatch, verb: 'get' | 'gets'): void {
    this.written = batch.retrieval(verb, this.keys)
    this.at = 0
    // Sent again (its first socket closed): the new reply starts from scratch.
    if (this.next > 0 || this.unanswered !== undefined) {
      this.next = 0
      this.passed = undefined
      this.unanswered = undefined
    }
  }

  /**
   * The sent key the VALUE line `buf[start, end)` begins with; undefined
   * when it names no key still unanswered. Marks that key answered.
   */
  claim (buf: Buffer, start: number, end: number): string | undefined {
    if (this.unanswered !== undefined) return this.claimAnyOrder(buf, start, end)
    const written = this.written
    let at = this.at
    for (let i = this.next; i < this.keys.length; i++) {
      const key = this.keys[i] as string
      // An ASCII key takes one byte per UTF-16 unit; more bytes mean UTF-8.
      let bytes = key.length
      if (at + bytes < written.length && written[at + bytes] !== 32) {
        const space = written.indexOf(32, at)
        bytes = (space === -1 ? written.length : space) - at
      }
      if (start + bytes < end && buf[start + bytes] === 32 && sameBytes(buf, start, written, at, bytes)) {
        if (i > this.next) this.pass(i)
        this.next = i + 1
        this.at = at + bytes + 1
        this.claimed = i
        return key
      }
      at += bytes + 1
    }
    // No key passed over: nothing before the cursor is unanswered.
    return this.passed === undefined ? undefined : this.leaveRequestOrder(buf, start, end)
  }

  /** The reply left request order: from now on, keys are looked up by name. Kept out of {@link claim}, the hot path. */
  private leaveRequestOrder (buf: Buffer, start: number, end: number): string | undefined {
    this.unanswered = new Map()
    for (const i of this.passed as number[]) this.keepUnanswered(i)
    for (let i = this.next; i < this.keys.length; i++) this.keepUnanswered(i)
    return this.claimAnyOrder(buf, start, end)
  }

  /** The cursor skips the positions from `next` to `to` (excluded). */
  private pass (to: number): void {
    const passed = this.passed ??= []
    for (let i = this.next; i < to; i++) passed.push(i)
  }

  private keepUnanswered (i: number): void {
    const key = this.keys[i] as string
    const positions = (this.unanswered as Map<string, number[]>).get(key)
    if (positions === undefined) (this.unanswered as Map<string, number[]>).set(key, [i])
    else positions.push(i)
  }

  private claimAnyOrder (buf: Buffer, start: number, end: number): string | undefined {
    const unanswered = this.unanswered as Map<string, number[]>
    let space = start
    while (space < end && buf[space] !== 32) space++
    if (space === end) return undefined
    const key = buf.toString('utf8', start, space)
    const positions = unanswered.get(key)
    if (positions === undefined) return undefined
    const i = positions.shift() as number
    if (positions.length === 0) unanswered.delete(key)
    this.claimed = i
    return this.keys[i]
  }
}

function sameBytes (a: Buffer, aStart: number, b: Buffer, bStart: number, length: number): boolean {
  for (let i = 0; i < length; i++) {
    if (a[aStart + i] !== b[bStart + i]) return false
  }
  return true
}

/** Turns the completing reply into a result, or into the error to reject with. */
export type Interpret<T> = (reply: Reply, request: SingleRequest<T>, server: string) => T | MemcachedError

/** A request with exactly one caller. */
export class SingleRequest<T> implements Request {
  readonly callers = 1
  deadline = 0
  /** VALUE blocks received so far, in order. */
  items: Item[] | undefined
  /** STAT lines received so far. */
  stats: Record<string, string> | undefined

  constructor (
    readonly kind: ReplyKind,
    /** The request line: a string, or a command's fields. */
    readonly head: string | FieldLine,
    private readonly body: Buffer | Uint8Array | string | undefined,
    private readonly bodySize: number,
    private readonly interpret: Interpret<T>,
    private readonly resolve: (result: T) => void,
    private readonly reject: (error: MemcachedError) => void,
    /** The key a retrieval asked for: a VALUE for any other key (or without one asked) is a protocol error. */
    private readonly wanted?: string
  ) {}

  encode (batch: RequestBatch): void {
    // Sent again (its first socket closed): what arrived on that one does not count.
    if (this.items !== undefined) this.items = undefined
    const head = this.head
    if (typeof head === 'string') batch.line(head)
    else head.writeTo(batch)
    if (this.body !== undefined) batch.value(this.body, this.bodySize)
  }

  claim (buf: Buffer, start: number, end: number): string | undefined {
    const wanted = this.wanted
    // One key asked for, so one VALUE at most: a second one is a protocol error.
    return wanted !== undefined && this.items === undefined && isKeyAt(buf, start, end, wanted) ? wanted : undefined
  }

  onValue (key: string, value: Buffer, flags: number, cas: bigint | undefined): void {
    const item: Item = { key, value, flags, cas }
    if (this.items === undefined) this.items = [item]
    else this.items.push(item)
  }

  onStat (name: string, value: string): void {
    if (this.stats === undefined) this.stats = Object.create(null) as Record<string, string>
    this.stats[name] = value
  }

  complete (reply: Reply, server: string): void {
    const result = this.interpret(reply, this, server)
    if (result instanceof MemcachedError) this.reject(result)
    else this.resolve(result)
  }

  fail (error: MemcachedError): void {
    this.reject(error)
  }
}

/** One caller of a key in a {@link GetBatch}, and the next caller of the same key. */
interface GetWaiter<T> {
  readonly resolve: (result: T | undefined) => void
  readonly reject: (error: MemcachedError) => void
  /** Another caller of the same key in this batch. */
  next: GetWaiter<T> | undefined
}

/** Keys per coalesced `get`: bounds the line and the reply a batch waits for. */
export const MAX_BATCH_KEYS = 256

/**
 * What a coalesced retrieval resolves with, from a VALUE's fields (no item
 * object per value); `copy` asks for a buffer of the caller's own.
 */
export type ItemResult<T> = (value: Buffer, flags: number, cas: bigint | undefined, copy: boolean) => T

/** A kind of single-key retrieval that coalesces: the verb sent, and what a VALUE resolves as. */
export interface Retrieval<T> {
  readonly verb: 'get' | 'gets'
  readonly result: ItemResult<T>
}

/**
 * The keys of a {@link GetBatch} once a second one joins. A VALUE finds its
 * callers by the position {@link SentKeys.claim} matched (an array index),
 * not by key: the map is only for telling a repeated key at {@link GetBatch.add}.
 */
interface OtherKeys<T> {
  /** Every distinct key in the order they are sent; the array SentKeys holds, so it may grow until the batch is written. */
  readonly keys: string[]
  readonly sent: SentKeys
  /** Each key's callers, by position in `keys` (the first key's at 0 stay with the batch); undefined once settled. */
  readonly waiters: Array<GetWaiter<T> | undefined>
  /**
   * The keys in `keys`, to tell a new key from one asked again; undefined
   * after a split, until a caller joins again (then built from `keys`).
   * A Set, not a Map of positions: a new key, the common case, costs one
   * `add`, whose size tells whether it was new; a key asked again is looked
   * for in `keys`. The Map's `get` and `set` cost 3 to 5 % of a coalesced
   * get's CPU at 128 and 1,024 in flight (bench/micro.ts), and a split
   * built one for each half.
   */
  asked: Set<string> | undefined
}

/** {@link GetBatch} state bits. */
const WRITTEN = 1
/** The first key's VALUE arrived on the socket the batch was last written to. */
const FIRST_CLAIMED = 2
/** The first key's callers are settled. */
const FIRST_SETTLED = 4

/**
 * Single-key `get`s (or `gets`) that reach one server in the same tick, sent
 * as one multi-key command. Each caller still gets its own result, or
 * undefined on a miss.
 *
 * At low concurrency most batches hold one caller, so that case is one
 * object of few fields (each is 8 bytes): the batch is its first caller's
 * waiter (it holds `resolve`, `reject` and `next`) and matches its reply
 * against its one key; the other keys' list, sent bytes and callers appear
 * when a second key joins.
 */
export class GetBatch<T> implements Request, GetWaiter<T> {
  deadline = 0
  callers = 1
  /** Further callers of the first key (this batch is the first). */
  next: GetWaiter<T> | undefined = undefined
  private state = 0
  private others: OtherKeys<T> | undefined = undefined

  /** A batch of one caller of `firstKey`, the first of the tick. */
  constructor (
    public retrieval: Retrieval<T>,
    /** Queues a request on the same connection: where a failed batch's keys go again, one by one. */
    private readonly resend: (request: Request) => void,
    private firstKey: string,
    public resolve: GetWaiter<T>['resolve'],
    public reject: GetWaiter<T>['reject']
  ) {}

  /**
   * Forgets the callers of a batch that END settled, so it can serve a new
   * tick's first caller ({@link reuse}); false, and nothing forgotten, when
   * it asked more than one key (its other keys' state is not worth keeping).
   * Only for a batch no queue holds any more: nothing can answer it again.
   */
  release (): boolean {
    if (this.others !== undefined) return false
    this.next = undefined
    this.resolve = settled
    this.reject = settled
    this.firstKey = ''
    return true
  }

  /** A {@link release}d batch as a new batch of one caller of `firstKey`: a get at one in flight allocates no batch. */
  reuse (retrieval: Retrieval<T>, firstKey: string, resolve: GetWaiter<T>['resolve'], reject: GetWaiter<T>['reject']): this {
    this.retrieval = retrieval
    this.firstKey = firstKey
    this.resolve = resolve
    this.reject = reject
    this.deadline = 0
    this.callers = 1
    this.state = 0
    return this
  }

  get kind (): 'values' { return 'values' }

  /** Whether it takes no further key: written already (a batch sent again keeps its keys), or as many keys as a batch holds. */
  get full (): boolean {
    return (this.state & WRITTEN) !== 0 || (this.others !== undefined && this.others.keys.length >= MAX_BATCH_KEYS)
  }

  /** The first key's callers, headed by this batch; undefined once settled. */
  private get first (): GetWaiter<T> | undefined {
    return (this.state & FIRST_SETTLED) === 0 ? this : undefined
  }

  /** One more caller, of the same key or another. */
  add (key: string, resolve: GetWaiter<T>['resolve'], reject: GetWaiter<T>['reject']): void {
    const waiter: GetWaiter<T> = { resolve, reject, next: undefined }
    this.callers++
    if (key === this.firstKey) {
      waiter.next = this.next
      this.next = waiter
      return
    }
    const others = this.others ??= otherKeys(this.firstKey)
    const asked = others.asked ??= new Set(others.keys)
    const known = asked.size
    if (asked.add(key).size > known) {
      others.keys.push(key)
      others.waiters.push(waiter)
    } else {
      const first = others.waiters[others.keys.indexOf(key)] as GetWaiter<T>
      waiter.next = first.next
      first.next = waiter
    }
  }

  /** Whether it may be split: more than one key, and not written yet (a batch sent again keeps its keys). */
  get splittable (): boolean {
    return this.keyCount > 1 && (this.state & WRITTEN) === 0
  }

  /** Keys this batch asks for. */
  get keyCount (): number {
    return this.others === undefined ? 1 : this.others.keys.length
  }

  /**
   * Moves the keys from position `from` on, with their callers, into a new
   * batch, which the caller queues right behind this one. Only before either
   * is written, and for 0 < from < {@link keyCount}.
   */
  splitOff (from: number): GetBatch<T> {
    const others = this.others as OtherKeys<T>
    const keys = others.keys.splice(from)
    const waiters = others.waiters.splice(from)
    others.asked = undefined
    const first = waiters[0] as GetWaiter<T>
    const tail = new GetBatch(this.retrieval, this.resend, keys[0] as string, first.resolve, first.reject)
    tail.deadline = this.deadline
    tail.next = first.next
    // As in any batch, the first key's callers are the batch itself.
    waiters[0] = undefined
    if (keys.length > 1) tail.others = { keys, sent: new SentKeys(keys), waiters, asked: undefined }
    tail.callers = waiters.reduce((sum, waiter) => sum + callersFrom(waiter), callersFrom(tail))
    this.callers -= tail.callers
    // Left with its first key only, it is a batch of one key again: the plain line, and reusable.
    if (from === 1) this.others = undefined
    return tail
  }

  /** Moves every key but the first into a batch of its own, in order: {@link splitOff} key by key. */
  splitEach (): Array<GetBatch<T>> {
    const tails = new Array<GetBatch<T>>(this.keyCount - 1)
    for (let from = tails.length; from >= 1; from--) tails[from - 1] = this.splitOff(from)
    return tails
  }

  encode (batch: RequestBatch): void {
    // Sent again (its first socket closed): the new reply starts from scratch.
    this.state = (this.state | WRITTEN) & ~FIRST_CLAIMED
    if (this.others === undefined) batch.retrievalOfKey(this.retrieval.verb, this.firstKey)
    else this.others.sent.encode(batch, this.retrieval.verb)
  }

  claim (buf: Buffer, start: number, end: number): string | undefined {
    if (this.others !== undefined) return this.others.sent.claim(buf, start, end)
    // One key asked for, so one VALUE at most: a second one is a protocol error.
    if ((this.state & FIRST_CLAIMED) !== 0 || !isKeyAt(buf, start, end, this.firstKey)) return undefined
    this.state |= FIRST_CLAIMED
    return this.firstKey
  }

  onValue (_key: string, value: Buffer, flags: number, cas: bigint | undefined): void {
    let waiter: GetWaiter<T> | undefined
    const at = this.others === undefined ? 0 : this.others.sent.claimed
    if (at === 0) {
      waiter = this.first
      this.state |= FIRST_SETTLED
    } else {
      const waiters = (this.others as OtherKeys<T>).waiters
      waiter = waiters[at]
      waiters[at] = undefined
    }
    // Answered already on a socket that closed before END; this is the batch sent again.
    if (waiter === undefined) return
    const result = this.retrieval.result
    waiter.resolve(result(value, flags, cas, false))
    // Callers of the same key get their own copy, so one cannot change another's.
    for (waiter = waiter.next; waiter !== undefined; waiter = waiter.next) waiter.resolve(result(value, flags, cas, true))
  }

  onStat (): void {}

  complete (reply: Reply, server: string): void {
    if (reply.type === 'end') return this.settleAll()
    // A proxy answers a whole multi-key get with one SERVER_ERROR when any
    // backend in it is down (twemproxy): asked once more key by key, only
    // the dead backend's keys fail. A key asked on its own fails for good.
    if (reply.type === 'error' && reply.kind === 'SERVER_ERROR') {
      const waiting = this.unanswered()
      if (waiting.length > 1) return this.resendEach(waiting)
      return this.rejectAll(waiting, replyError(reply, server))
    }
    this.fail(replyError(reply, server))
  }

  private resendEach (waiting: Array<[string, GetWaiter<T>]>): void {
    for (const [key, waiter] of waiting) this.resend(new KeyRetry(this.retrieval, key, waiter))
  }

  split (): Request[] | undefined {
    if (this.others === undefined) return undefined
    return this.unanswered().map(([key, waiter]) => new KeyRetry(this.retrieval, key, waiter))
  }

  fail (error: MemcachedError): void {
    this.rejectAll(this.unanswered(), error)
  }

  private rejectAll (waiting: Array<[string, GetWaiter<T>]>, error: MemcachedError): void {
    for (const [, waiter] of waiting) {
      for (let next: GetWaiter<T> | undefined = waiter; next !== undefined; next = next.next) next.reject(error)
    }
  }

  /** END: every key still waiting was a miss. The hot path: it allocates nothing. */
  private settleAll (): void {
    resolveMissed(this.first)
    this.state |= FIRST_SETTLED
    const waiters = this.others?.waiters
    if (waiters !== undefined) for (let at = 1; at < waiters.length; at++) resolveMissed(waiters[at])
  }

  /** Every key not answered yet with its first caller; forgets them all. */
  private unanswered (): Array<[string, GetWaiter<T>]> {
    const waiting: Array<[string, GetWaiter<T>]> = []
    if (this.first !== undefined) waiting.push([this.firstKey, this])
    this.state |= FIRST_SETTLED
    if (this.others !== undefined) {
      const { keys, waiters } = this.others
      for (let at = 1; at < waiters.length; at++) {
        const waiter = waiters[at]
        if (waiter !== undefined) waiting.push([keys[at] as string, waiter])
        waiters[at] = undefined
      }
    }
    return waiting
  }
}

/** The callers of a released {@link GetBatch}: none, so whatever still calls them reaches nobody. */
function settled (): void {}

function otherKeys<T> (firstKey: string): OtherKeys<T> {
  const keys = [firstKey]
  return { keys, sent: new SentKeys(keys), waiters: [undefined], asked: new Set<string>().add(firstKey) }
}

/** The callers of one key in a batch: `first` and those chained behind it. */
function callersFrom<T> (first: GetWaiter<T> | undefined): number {
  let count = 0
  for (let waiter = first; waiter !== undefined; waiter = waiter.next) count++
  return count
}

/** Resolves a key's callers with a miss, unless it was answered (then it is undefined). */
function resolveMissed<T> (first: GetWaiter<T> | undefined): void {
  for (let waiter = first; waiter !== undefined; waiter = waiter.next) waiter.resolve(undefined)
}

/** One key of a {@link GetBatch} that failed as a whole, asked for again on its own, for all its callers. */
class KeyRetry<T> implements Request {
  readonly kind = 'values'
  readonly callers: number
  deadline = 0
  private item: Item | undefined

  constructor (
    private readonly retrieval: Retrieval<T>,
    private readonly key: string,
    private readonly first: GetWaiter<T>
  ) {
    let callers = 0
    for (let waiter: GetWaiter<T> | undefined = first; waiter !== undefined; waiter = waiter.next) callers++
    this.callers = callers
  }

  encode (batch: RequestBatch): void {
    this.item = undefined
    batch.retrievalOfKey(this.retrieval.verb, this.key)
  }

  claim (buf: Buffer, start: number, end: number): string | undefined {
    return this.item === undefined && isKeyAt(buf, start, end, this.key) ? this.key : undefined
  }

  onValue (key: string, value: Buffer, flags: number, cas: bigint | undefined): void {
    this.item = { key, value, flags, cas }
  }

  onStat (): void {}

  complete (reply: Reply, server: string): void {
    if (reply.type !== 'end') return this.fail(replyError(reply, server))
    const item = this.item
    let copy = false
    for (let waiter: GetWaiter<T> | undefined = this.first; waiter !== undefined; waiter = waiter.next) {
      waiter.resolve(item === undefined ? undefined : this.retrieval.result(item.value, item.flags, item.cas, copy))
      copy = true
    }
  }

  fail (error: MemcachedError): void {
    for (let waiter: GetWaiter<T> | undefined = this.first; waiter !== undefined; waiter = waiter.next) waiter.reject(error)
  }
}

/**
 * One server's share of a `getMulti`: a multi-key `get` whose hits go
 * straight into the map the caller receives (shared by every server's share).
 */
export class MultiGet implements Request {
  readonly kind = 'values'
  readonly callers = 1
  deadline = 0
  private readonly sent: SentKeys

  constructor (
    /** The keys, in the order they are sent. */
    keys: readonly string[],
    private readonly found: Map<string, Buffer>,
    private readonly resolve: (found: Map<string, Buffer>) => void,
    private readonly reject: (error: MemcachedError) => void
  ) {
    this.sent = new SentKeys(keys)
  }

  encode (batch: RequestBatch): void {
    this.sent.encode(batch, 'get')
  }

  claim (buf: Buffer, start: number, end: number): string | undefined {
    return this.sent.claim(buf, start, end)
  }

  onValue (key: string, value: Buffer): void {
    this.found.set(key, value)
  }

  onStat (): void {}

  complete (reply: Reply, server: string): void {
    if (reply.type === 'end') this.resolve(this.found)
    else this.reject(replyError(reply, server))
  }

  fail (error: MemcachedError): void {
    this.reject(error)
  }
}

/** The error a reply stands for: an error line, or a reply of the wrong shape. */
export function replyError (reply: Reply, server: string): MemcachedError {
  if (reply.type !== 'error') {
    return new MemcachedError('MC_PROTOCOL', `unexpected reply ${JSON.stringify(reply)}`, { server })
  }
  if (reply.kind === 'SERVER_ERROR') {
    // memcached swallows the value it refuses, so the connection stays usable.
    const tooLarge = reply.message.includes('too large')
    return new MemcachedError(tooLarge ? 'MC_TOO_LARGE' : 'MC_SERVER_ERROR', `SERVER_ERROR ${reply.message}`, { server })
  }
  const text = reply.kind === 'ERROR' ? 'ERROR (command unknown to the server)' : `CLIENT_ERROR ${reply.message}`
  return new MemcachedError('MC_CLIENT_ERROR', text, { server })
}
