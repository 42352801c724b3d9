/**
 * One socket to one memcached server, shared by every caller: requests wait
 * in `pending` until the next flush writes them in one batch, then in
 * `inflight` until their reply arrives, strictly in order.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { GetBatch, RequestBatch, type Request, type Retrieval } from './commands.js'
import { MemcachedError } from './errors.js'
import { ReplyParser, type ParserSink, type Reply, type ReplyKind } from './parser.js'

/** What a connection needs to know; all durations in ms. */
export interface ConnectionOptions {
  host: string
  port: number
  timeout: number
  connectTimeout: number
  maxQueue: number
  maxValueSize: number
  /** Longest backoff between failed reconnects. */
  maxBackoff: number
  /** The server is a proxy (twemproxy, mcrouter): see {@link Connection.closedByProxy}. */
  proxy: boolean
  tls: tls.ConnectionOptions | undefined
}

/** How a connection tells its owner about health, for ejection from the ring. */
export interface ConnectionEvents {
  /**
   * The connection failed (refused, connect timeout, lost, command timeout,
   * garbage); `consecutive` counts failures since the last reply.
   */
  onFailure (connection: Connection, error: MemcachedError, consecutive: number): void
}

/** Written requests not yet answered, at most; beyond it requests wait in `pending`. */
const MAX_IN_FLIGHT = 4096
const BASE_BACKOFF = 50
/** Answered batches a connection keeps for reuse: one suffices at one get in flight. */
const MAX_SPARE_BATCHES = 8
/**
 * Sizes of the buffer socket reads go into: it doubles while reads fill it
 * (more was waiting: fewer, larger reads) and goes back to the minimum when
 * reads are small, so a value handed out as a view pins little memory.
 */
export const MIN_READ_BYTES = 64 * 1024
export const MAX_READ_BYTES = 256 * 1024
/**
 * The size of the buffer the next read goes into, after a read of
 * `lastRead` bytes into one of `current`: doubled when that read filled it
 * (more was waiting), halved while that read would not have filled half of
 * it. The parser hands values out as views only from a read that fills
 * nearly half of its buffer or more (VIEW_MIN_FILL in parser.ts): a
 * 100-value reply arrives on loopback as a 65,483-byte segment and the
 * rest, and kept at 128 KiB after one full read,
 * the buffer would see every one of those values copied (86 % of them at
 * one 100-key get in flight), at ten times the CPU of a view.
 */
export function readBufferSize (current: number, lastRead: number): number {
  if (lastRead === current) return Math.min(MAX_READ_BYTES, current * 2)
  let size = current
  while (size > MIN_READ_BYTES && lastRead < size / 2) size /= 2
  return size
}
/** Longest reply line: a VALUE line with a 250-byte key is about 300 bytes. */
const MAX_LINE = 8192

let tickNow: number | undefined
/**
 * Connections whose batch is written at the end of this tick (see
 * {@link Connection.scheduleFlush}): the first `flushesAtTickEnd` slots. The
 * array is never truncated (`length = 0` drops its backing store, and the next
 * push allocates one again).
 */
const flushAtTickEnd: Array<Connection | undefined> = []
let flushesAtTickEnd = 0
/**
 * Queues {@link endTick} as a microtask, through a resolved promise: Node's
 * `queueMicrotask` allocates an AsyncResource and a bound function per
 * call, `setImmediate` and `process.nextTick` an object each plus async
 * context bookkeeping (about 290 bytes a command at one in flight).
 */
const RESOLVED = Promise.resolve()

/**
 * `performance.now()`, read once per tick: requests queued together get the
 * same deadline, so a timeout fails them together (and it saves clock reads).
 * The first read of a tick queues {@link endTick}, so every command is
 * queued before the end of its tick is.
 */
function now (): number {
  if (tickNow === undefined) {
    tickNow = performance.now()
    RESOLVED.then(endTick)
  }
  return tickNow
}

/** The end of the tick: the clock is read afresh, and the batches of idle connections leave. */
function endTick (): void {
  tickNow = undefined
  for (let i = 0; i < flushesAtTickEnd; i++) {
    const connection = flushAtTickEnd[i] as Connection
    flushAtTickEnd[i] = undefined
    connection.flushScheduledNow()
  }
  flushesAtTickEnd = 0
}

/**
 * The largest batch {@link Connection.splitIdleBatch} splits. At 128 gets in
 * flight the idle batches hold about 124 keys, and splitting them lost 5-8 %
 * (9 rounds of 9): each half is long enough to keep both sides busy, and the
 * second command only adds work.
 */
const MAX_SPLIT_KEYS = 64

/**
 * The most callers a connection may have waiting while its gets still go
 * one command per key, uncoalesced (see {@link Connection.writeKeyByKey}).
 */
const MAX_CALLERS_KEY_BY_KEY = 4

/** Slots of a new {@link Fifo}, and the most an empty one keeps. */
const FIFO_SLOTS = 16
const FIFO_MAX_IDLE_SLOTS = 1024

/**
 * A FIFO over a ring of slots (a power of two) that doubles when full: it
 * allocates nothing while the queue stays within its size, where an array
 * shifted from the front allocates as it grows and compacts. Emptied, it
 * gives back what a burst made it grow to.
 */
class Fifo<T> {
  private slots: Array<T | undefined> = new Array<T | undefined>(FIFO_SLOTS).fill(undefined)
  private head = 0
  private count = 0

  get length (): number { return this.count }
  peek (): T | undefined { return this.count > 0 ? this.slots[this.head] : undefined }
  last (): T | undefined { return this.count > 0 ? this.slots[(this.head + this.count - 1) & (this.slots.length - 1)] : undefined }

  push (item: T): void {
    if (this.count === this.slots.length) this.grow()
    this.slots[(this.head + this.count) & (this.slots.length - 1)] = item
    this.count++
  }

  shift (): T | undefined {
    if (this.count === 0) return undefined
    const item = this.slots[this.head]
    this.slots[this.head] = undefined
    this.head = (this.head + 1) & (this.slots.length - 1)
    if (--this.count === 0 && this.slots.length > FIFO_MAX_IDLE_SLOTS) this.reset()
    return item
  }

  /** Whether any item satisfies `test`. */
  some (test: (item: T) => boolean): boolean {
    for (let i = 0; i < this.count; i++) if (test(this.slots[(this.head + i) & (this.slots.length - 1)] as T)) return true
    return false
  }

  /** Empties the queue and returns what it held, oldest first. */
  drain (): T[] {
    const items: T[] = []
    for (let i = 0; i < this.count; i++) items.push(this.slots[(this.head + i) & (this.slots.length - 1)] as T)
    this.reset()
    return items
  }

  private grow (): void {
    const slots = new Array<T | undefined>(this.slots.length * 2).fill(undefined)
    for (let i = 0; i < this.count; i++) slots[i] = this.slots[(this.head + i) & (this.slots.length - 1)]
    this.slots = slots
    this.head = 0
  }

  private reset (): void {
    this.slots = new Array<T | undefined>(FIFO_SLOTS).fill(undefined)
    this.head = 0
    this.count = 0
  }
}

type State = 'idle' | 'connecting' | 'ready' | 'closed'

export class Connection implements ParserSink {
  /** `host:port`, as errors and stats name it. */
  readonly server: string
  private state: State = 'idle'
  private socket: net.Socket | undefined
  private readonly pending = new Fifo<Request>()
  private readonly inflight = new Fifo<Request>()
  /** Callers not yet answered, queued and in flight (`maxQueue` counts these). */
  private outstanding = 0
  private readonly batch = new RequestBatch()
  /** Answered single-key batches, for the next ticks' first gets (see {@link GetBatch.release}). */
  private readonly spareBatches: Array<GetBatch<unknown>> = []
  private readonly parser: ReplyParser
  /** Where plain TCP sockets read into; replaced only when the parser handed out a view of it, or to resize it. */
  private readBuffer: Buffer | undefined
  /** Bytes of the last read into `readBuffer`. */
  private lastRead = 0
  /** Whether the last read filled its buffer: libuv then reads again at once, in the same turn of the event loop. */
  private readFilledBuffer = false
  private flushScheduled = false
  private timer: NodeJS.Timeout | undefined
  private connectTimer: NodeJS.Timeout | undefined
  /** Consecutive failures, for the backoff. */
  private failures = 0
  /** Until when (performance.now() ms) new requests fail fast instead of reconnecting. */
  private downUntil = 0
  private lastError: MemcachedError | undefined
  /** Whether the current socket delivered a reply (the server behind it is alive). */
  private answeredOnSocket = false
  /** Reads already sent again after a proxy closed their socket: never a second time. */
  private readonly resentAfterClose = new WeakSet<Request>()
  private closing = false
  /** Sockets not yet closed by the OS (a destroyed one closes a tick later). */
  private openSockets = 0
  private closed: Promise<void> | undefined
  private resolveClosed: (() => void) | undefined

  constructor (private readonly options: ConnectionOptions, private readonly events: ConnectionEvents) {
    this.server = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`
    this.parser = new ReplyParser(this, { maxLine: MAX_LINE, maxValue: options.maxValueSize })
  }

  /** Callers waiting on this server, queued or in flight. */
  get queued (): number { return this.outstanding }

  /** Queues a request; it settles with a reply or a MemcachedError, never throws. */
  send (request: Request): void {
    const refusal = this.refusal()
    if (refusal !== undefined) return request.fail(refusal)
    this.enqueue(request)
  }

  /**
   * Queues a single-key `get` or `gets`, coalesced with the other retrievals
   * of the same verb queued behind it in this tick. A batch only ever takes
   * keys while it is the last queued request, so program order holds: a get
   * after a set of the same key sees the set.
   */
  sendRetrieval<T> (retrieval: Retrieval<T>, key: string, resolve: (value: T | undefined) => void, reject: (error: MemcachedError) => void): void {
    const refusal = this.refusal()
    if (refusal !== undefined) return reject(refusal)
    const tail = this.pending.last()
    if (tail instanceof GetBatch && tail.retrieval === retrieval && !tail.full) {
      (tail as GetBatch<T>).add(key, resolve, reject)
      this.outstanding++
      return
    }
    const spare = this.spareBatches.pop() as GetBatch<T> | undefined
    this.enqueue(spare !== undefined ? spare.reuse(retrieval, key, resolve, reject) : new GetBatch(retrieval, this.resend, key, resolve, reject))
  }

  /**
   * Queues again a request made from one that was answered (a failed
   * batch's keys): its callers already passed the checks of {@link send},
   * and a closing connection still owes them an answer.
   */
  private readonly resend = (request: Request): void => {
    this.enqueue(request)
  }

  private refusal (): MemcachedError | undefined {
    if (this.closing) return new MemcachedError('MC_CLOSED', 'the client is closed', { server: this.server })
    if (this.outstanding >= this.options.maxQueue) {
      return new MemcachedError('MC_QUEUE_FULL', `${this.outstanding} commands already wait for ${this.server}`, { server: this.server })
    }
    if (this.state === 'idle' && this.downUntil > performance.now()) {
      return new MemcachedError('MC_CONNECTION', `${this.server} is unreachable; next attempt soon`, { server: this.server, cause: this.lastError })
    }
    return undefined
  }

  private enqueue (request: Request): void {
    // Whole milliseconds: a field that only ever holds small integers stores them unboxed.
    request.deadline = Math.ceil(now() + this.options.timeout)
    this.pending.push(request)
    this.outstanding += request.callers
    if (this.timer === undefined) this.armTimer(this.options.timeout)
    if (this.state === 'idle') this.connect()
    else if (this.state === 'ready') this.scheduleFlush()
  }

  // ---- socket lifecycle ----

  private connect (): void {
    const socket = this.openSocket()
    if (socket === undefined) return
    this.state = 'connecting'
    this.socket = socket
    this.openSockets++
    socket.once('close', () => {
      this.openSockets--
      this.finishClose()
    })
    socket.setNoDelay(true)
    this.connectTimer = setTimeout(() => {
      this.lose(socket, new MemcachedError('MC_TIMEOUT', `no connection to ${this.server} within ${this.options.connectTimeout} ms`, { server: this.server }))
    }, this.options.connectTimeout)
    socket.once(this.options.tls === undefined ? 'connect' : 'secureConnect', () => this.onConnect(socket))
    if (this.options.tls !== undefined) socket.on('data', (chunk: Buffer) => { if (socket === this.socket) this.parser.feed(chunk) })
    socket.on('drain', () => { if (socket === this.socket) this.flush() })
    socket.on('error', (error: Error) => this.lose(socket, this.socketError(error)))
    socket.on('close', () => this.lose(socket, new MemcachedError('MC_CONNECTION', `connection to ${this.server} closed`, { server: this.server })))
  }

  /**
   * A new socket, or undefined when it cannot even be created: `tls.connect`
   * throws at once on TLS options it cannot use (a `ca` of the wrong type, an
   * unknown `minVersion`). Then every queued request fails with that error
   * as the cause, and it counts as a failed connect.
   */
  private openSocket (): net.Socket | undefined {
    const { host, port } = this.options
    try {
      // Plain TCP reads into a buffer of ours (no allocation and no stream
      // machinery per read); TLS sockets deliver 'data' events.
      const socket: net.Socket = this.options.tls === undefined
        ? net.connect({ host, port, noDelay: true, onread: { buffer: this.nextReadBuffer, callback: (bytes, buffer) => this.onRead(socket, buffer, bytes) } })
        : tls.connect({ ...this.options.tls, host, port })
      return socket
    } catch (error) {
      const failure = this.socketError(error as Error)
      this.failAll(this.pending, failure)
      if (!this.closing) this.recordFailure(failure)
      this.finishClose()
      return undefined
    }
  }

  private onRead (socket: net.Socket, buffer: Uint8Array, bytes: number): true {
    this.lastRead = bytes
    if (socket !== this.socket) return true
    this.parser.feed(buffer as Buffer, bytes)
    this.readFilledBuffer = bytes === buffer.length
    return true
  }

  /** The buffer the next read goes into: the same one, unless a value handed out is a view of it or it should change size. */
  private readonly nextReadBuffer = (): Buffer => {
    const current = this.readBuffer
    const viewed = this.parser.takeViewed()
    const size = current === undefined ? MIN_READ_BYTES : readBufferSize(current.length, this.lastRead)
    if (current !== undefined && !viewed && size === current.length) return current
    this.readBuffer = Buffer.allocUnsafeSlow(size)
    return this.readBuffer
  }

  private socketError (error: Error): MemcachedError {
    const code = (error as NodeJS.ErrnoException).code ?? error.message
    return new MemcachedError('MC_CONNECTION', `connection to ${this.server} failed: ${code}`, { server: this.server, cause: error })
  }

  private onConnect (socket: net.Socket): void {
    if (socket !== this.socket) return
    clearTimeout(this.connectTimer)
    this.answeredOnSocket = false
    this.state = 'ready'
    this.parser.reset()
    this.flush()
  }

  /**
   * The socket is gone (error, close, timeout or garbage). Whatever was
   * written on it fails: its replies can never be matched again. Requests
   * not yet written fail too when the connection never came up or broke,
   * so callers learn of a dead server at once instead of at their timeout.
   */
  private lose (socket: net.Socket, error: MemcachedError): void {
    if (socket !== this.socket) return
    const wasReady = this.drop(socket)
    const cleanClose = wasReady && error.cause === undefined && error.code === 'MC_CONNECTION'
    if (wasReady && this.proxyDroppedPipeline(error, cleanClose)) return this.closedByProxy(error)
    const cleanIdleClose = cleanClose && this.inflight.length === 0
    this.failAll(this.inflight, error)
    if (cleanIdleClose) {
      // The server closed an idle connection (idle_timeout, restart): reconnect on demand.
      if (this.pending.length > 0) this.connect()
    } else {
      this.failAll(this.pending, error)
      if (!this.closing) this.recordFailure(error)
    }
    this.finishClose()
  }

  /** Lets go of the current socket; returns whether it was ready. */
  private drop (socket: net.Socket): boolean {
    this.socket = undefined
    clearTimeout(this.connectTimer)
    socket.destroy()
    const wasReady = this.state === 'ready'
    this.state = this.closing ? 'closed' : 'idle'
    return wasReady
  }

  /**
   * Whether a proxy dropped the commands pipelined on a ready socket rather
   * than died. twemproxy closes the connection after a multi-key get's
   * SERVER_ERROR, dropping what was pipelined behind it: cleanly once it
   * answered, or with a reset when those requests were still unread on its
   * side (the kernel then sends RST and, on a loaded machine, the reset can
   * discard the SERVER_ERROR before the client reads it). A reset counts only
   * while some read in flight has not gone again yet: a proxy that resets
   * every socket fails the second time and is counted as failing.
   */
  private proxyDroppedPipeline (error: MemcachedError, cleanClose: boolean): boolean {
    if (!this.options.proxy || this.inflight.length === 0) return false
    if (cleanClose) return this.answeredOnSocket
    return isReset(error.cause) && this.inflight.some((request) => isRead(request) && !this.resentAfterClose.has(request))
  }

  /**
   * A proxy dropped the commands in flight on this socket (see
   * {@link proxyDroppedPipeline}): twemproxy does so right after the
   * SERVER_ERROR for a multi-key get with a dead backend. The proxy is
   * alive, so this is no failure and starts no backoff. Reads in flight are
   * sent again, once, on a new socket, ahead of the queue; anything else may
   * have been applied, so it fails (never replay a write).
   */
  private closedByProxy (error: MemcachedError): void {
    const again: Request[] = []
    for (const request of this.inflight.drain()) {
      if (isRead(request) && !this.resentAfterClose.has(request)) {
        for (const part of this.keyByKey(request)) {
          this.resentAfterClose.add(part)
          again.push(part)
        }
      } else {
        this.outstanding -= request.callers
        request.fail(request.deadline <= performance.now() ? this.timeoutError() : error)
      }
    }
    // Queued multi-key gets go key by key too: written as they are, one that
    // spans the dead backend would close the new socket as well, failing the
    // reads already sent again on it.
    for (const request of this.pending.drain()) again.push(...this.keyByKey(request))
    for (const request of again) this.pending.push(request)
    if (this.pending.length > 0) this.connect()
    this.finishClose()
  }

  /**
   * A request as it goes again after a proxy closed the socket: a multi-key
   * get becomes one single-key get per key still waiting (twemproxy answers
   * those with a SERVER_ERROR of their own and keeps the connection open),
   * each with its callers' deadline.
   */
  private keyByKey (request: Request): Request[] {
    const parts = request.split?.()
    if (parts === undefined) return [request]
    this.outstanding -= request.callers
    for (const part of parts) {
      part.deadline = request.deadline
      this.outstanding += part.callers
    }
    return parts
  }

  /**
   * A command timed out on a connected socket. Its reply cannot be skipped,
   * so the stream is dropped, failing what was written on it; but the server
   * was reachable a moment ago, so requests not yet written stay queued and
   * go out on a new socket at once. Backoff waits for a reconnect that fails
   * (then {@link lose} records it). The timeout still counts toward
   * ejection: a server that keeps timing out leaves the ring.
   */
  private replaceAfterTimeout (socket: net.Socket): void {
    const error = new MemcachedError('MC_CONNECTION', `connection to ${this.server} reset after a command timed out`, { server: this.server, cause: this.timeoutError() })
    this.drop(socket)
    this.failAll(this.inflight, error)
    if (!this.closing) {
      this.failures++
      this.lastError = error
      this.events.onFailure(this, error, this.failures)
    }
    if (this.pending.length > 0) this.connect()
    this.finishClose()
  }

  private recordFailure (error: MemcachedError): void {
    this.failures++
    this.lastError = error
    const ceiling = Math.min(this.options.maxBackoff, BASE_BACKOFF * 2 ** Math.min(this.failures - 1, 16))
    // Equal jitter: spread the reconnects of many app instances.
    this.downUntil = performance.now() + ceiling / 2 + Math.random() * ceiling / 2
    this.events.onFailure(this, error, this.failures)
  }

  private failAll (queue: Fifo<Request>, error: MemcachedError): void {
    const now = performance.now()
    for (const request of queue.drain()) {
      this.outstanding -= request.callers
      request.fail(request.deadline <= now ? this.timeoutError() : error)
    }
  }

  private timeoutError (): MemcachedError {
    return new MemcachedError('MC_TIMEOUT', `no reply from ${this.server} within ${this.options.timeout} ms`, { server: this.server })
  }

  // ---- writing ----

  /**
   * When the batch queued in this tick is written. Nothing in flight: the
   * server is idle, so waiting gains nothing; the batch leaves at the end of
   * the tick (the microtask queued by the tick's first command), still one
   * write for everything queued in the tick. Replies pending: the batch
   * waits for the end of the event loop's turn (`setImmediate`), gathering
   * what every reply read in that turn sends next, one write for them all;
   * in a deep pipeline mid-turn, at the end of the tick too (see
   * {@link moreReadsThisTurn}).
   */
  private scheduleFlush (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    if ((this.inflight.length === 0 || this.moreReadsThisTurn()) && tickNow !== undefined) flushAtTickEnd[flushesAtTickEnd++] = this
    else setImmediate(this.flushNow)
  }

  /**
   * Whether a deep pipeline's read just filled its buffer, so more reads
   * follow in this turn (libuv reads up to 32 times while they fill): then
   * the batch leaves at the end of this read's tick, and memcached, its
   * replies drained, works on it while the client reads and handles the
   * rest. Gathered until the end of the turn, it waited for all of them:
   * 1.22x, 1.34x and 1.25x the rate at 128 in flight in three side-by-side
   * runs (docs/benchmarks.md). Not with {@link MAX_SPLIT_KEYS} callers or
   * fewer: their batch, gathered over the turn, leaves on an idle connection
   * in halves, which beat writing per read at 64 in flight (0.76x per read).
   */
  private moreReadsThisTurn (): boolean {
    return this.readFilledBuffer && this.outstanding > MAX_SPLIT_KEYS
  }

  /** Runs the flush {@link scheduleFlush} scheduled. */
  flushScheduledNow (): void {
    this.flushScheduled = false
    this.flush()
  }

  private readonly flushNow = (): void => {
    this.flushScheduledNow()
  }

  /** Writes every pending request that fits in flight, as one batch. */
  private flush (): void {
    const socket = this.socket
    if (this.state !== 'ready' || socket === undefined || socket.writableNeedDrain) return
    const idle = this.inflight.length === 0
    // Idle, every byte written before has left (a plain socket holds a chunk
    // only while its write is unfinished) and no request in flight matches
    // its reply against the keys it was sent as: the batch may write over them.
    if (idle && this.options.tls === undefined && socket.writableLength === 0) this.batch.rewind()
    const keyByKey = this.outstanding <= MAX_CALLERS_KEY_BY_KEY
    if (idle && !keyByKey && this.pending.length === 1) this.splitIdleBatch()
    while (this.pending.length > 0 && this.inflight.length < MAX_IN_FLIGHT) {
      const request = this.pending.shift() as Request
      if (keyByKey && request instanceof GetBatch && request.splittable) this.writeKeyByKey(request)
      else this.write(request)
    }
    const chunks = this.batch.take()
    if (chunks === undefined) return
    if (!Array.isArray(chunks)) {
      socket.write(chunks)
    } else {
      socket.cork()
      for (const chunk of chunks) socket.write(chunk)
      socket.uncork()
    }
  }

  private write (request: Request): void {
    request.encode(this.batch)
    this.inflight.push(request)
  }

  /**
   * A coalesced batch written as one get per key, when at most
   * {@link MAX_CALLERS_KEY_BY_KEY} callers wait on the connection. memcached
   * sends its replies to several gets in more than one piece (four single
   * gets written together come back in 1.7 reads on average), but its reply
   * to one multi-key get in one piece, even split in halves (1.01 reads). In
   * one piece, every caller resumes at once and sends its next get in the
   * same write: client and server take turns (lock-step). In pieces, the
   * callers stay staggered and the two sides overlap. With 4 callers in a
   * loop, coalesced gets reached 0.81-0.87x the rate of uncoalesced ones, and
   * 0.96-1.07x written key by key (docs/benchmarks.md). With more callers,
   * coalescing saves more than the overlap is worth: at 8, one get line won
   * 1.22x.
   */
  private writeKeyByKey (batch: GetBatch<unknown>): void {
    const rest = batch.splitEach()
    this.write(batch)
    for (const part of rest) this.write(part)
  }

  /**
   * A coalesced batch about to leave alone on an idle connection goes as two
   * multi-key gets, halves, in the same write. As one get, memcached answers
   * only once it has read every key, and the client sleeps meanwhile; the
   * callers then send their next gets together, and the two take turns
   * again (lock-step). As halves, the client handles the first answer while
   * memcached reads the second half's keys, and the next gets go out behind
   * that half, so both sides work at once. With 16 and 64 callers in a
   * loop: 1.42x and 1.45x the rate of one get (docs/benchmarks.md). Up to
   * {@link MAX_SPLIT_KEYS} keys.
   */
  private splitIdleBatch (): void {
    const only = this.pending.peek()
    if (!(only instanceof GetBatch) || !only.splittable || only.keyCount > MAX_SPLIT_KEYS) return
    this.pending.push(only.splitOff(Math.ceil(only.keyCount / 2)))
  }

  // ---- replies (ParserSink) ----

  expecting (): ReplyKind | undefined {
    return this.inflight.peek()?.kind
  }

  valueKey (buf: Buffer, start: number, end: number): string | undefined {
    return (this.inflight.peek() as Request).claim(buf, start, end)
  }

  onValue (key: string, flags: number, value: Buffer, cas: bigint | undefined): void {
    (this.inflight.peek() as Request).onValue(key, value, flags, cas)
  }

  onStat (name: string, value: string): void {
    (this.inflight.peek() as Request).onStat(name, value)
  }

  onReply (reply: Reply): void {
    const request = this.inflight.shift() as Request
    this.outstanding -= request.callers
    this.failures = 0
    this.answeredOnSocket = true
    request.complete(reply, this.server)
    if (reply.type === 'end' && request instanceof GetBatch) this.spare(request)
    if (this.pending.length > 0 && this.inflight.length === MAX_IN_FLIGHT - 1) this.scheduleFlush()
    this.endIfDone()
  }

  /** Keeps a batch that END settled, now out of every queue, for a later tick (a few at most). */
  private spare (batch: GetBatch<unknown>): void {
    if (this.spareBatches.length >= MAX_SPARE_BATCHES || !batch.release()) return
    // A batch sent again after a proxy closed its socket is remembered by identity.
    if (this.options.proxy) this.resentAfterClose.delete(batch)
    this.spareBatches.push(batch)
  }

  onProtocolError (message: string): void {
    const socket = this.socket
    if (socket === undefined) return
    this.lose(socket, new MemcachedError('MC_PROTOCOL', `invalid reply from ${this.server}: ${message}`, { server: this.server }))
  }

  // ---- timeouts: one timer per connection, never one per request ----

  private armTimer (delay: number): void {
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(delay)))
    this.timer.unref()
  }

  private readonly onTimer = (): void => {
    this.timer = undefined
    const now = performance.now()
    const oldest = this.inflight.peek()
    if (oldest !== undefined && oldest.deadline <= now && this.socket !== undefined) this.replaceAfterTimeout(this.socket)
    this.expirePending(now)
    const next = Math.min(this.inflight.peek()?.deadline ?? Infinity, this.pending.peek()?.deadline ?? Infinity)
    if (next !== Infinity) this.armTimer(next - now)
  }

  /** Requests never written may simply be dropped when they time out. */
  private expirePending (now: number): void {
    let expired = 0
    for (let request = this.pending.peek(); request !== undefined && request.deadline <= now; request = this.pending.peek()) {
      this.pending.shift()
      this.outstanding -= request.callers
      request.fail(this.timeoutError())
      expired++
    }
    if (expired > 0) this.endIfDone()
  }

  // ---- probing and closing ----

  /** Tries to reach the server now, ignoring the backoff; resolves whether it answered. */
  async probe (): Promise<boolean> {
    this.downUntil = 0
    return await new Promise<boolean>((resolve) => {
      this.send(new ProbeRequest(resolve))
    })
  }

  /** Lets queued and in-flight requests finish, refuses new ones, then ends the socket. */
  async close (): Promise<void> {
    if (this.closed !== undefined) return await this.closed
    this.closing = true
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve })
    this.endIfDone()
    return await this.closed
  }

  /**
   * Once closing and nothing is left to answer, drops the socket: every
   * reply has arrived, so there is nothing to flush, and waiting for the
   * server's FIN could hang on a black-holed peer.
   */
  private endIfDone (): void {
    if (!this.closing || this.outstanding > 0) return
    const socket = this.socket
    if (socket === undefined) return this.finishClose()
    this.lose(socket, new MemcachedError('MC_CLOSED', 'the client is closed', { server: this.server }))
  }

  private finishClose (): void {
    if (!this.closing || this.socket !== undefined || this.outstanding > 0 || this.openSockets > 0) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.state = 'closed'
    this.resolveClosed?.()
  }
}

/** Whether a socket error is the peer's reset, not a refused connect or a timeout. */
function isReset (cause: unknown): boolean {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code
  return code === 'ECONNRESET' || code === 'EPIPE'
}

/** Whether a request only reads, so sending it twice changes nothing. */
function isRead (request: Request): boolean {
  return request.kind === 'values' || request.kind === 'version' || request.kind === 'stats'
}

/** `version`, used to learn whether an ejected server is back. */
class ProbeRequest implements Request {
  readonly kind = 'version'
  readonly callers = 1
  deadline = 0
  constructor (private readonly resolve: (answered: boolean) => void) {}
  encode (batch: RequestBatch): void { batch.line('version\r\n') }
  claim (): undefined { return undefined }
  onValue (): void {}
  onStat (): void {}
  complete (reply: Reply): void { this.resolve(reply.type === 'version') }
  fail (): void { this.resolve(false) }
}
