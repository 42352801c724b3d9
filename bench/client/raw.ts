/**
 * The ceilings: a raw socket doing the same work as the clients with nothing
 * on top. Reads go into one reused buffer (`net` `onread`); requests are
 * pre-built and go over the same keys, in the same order, as the clients'
 * loops ask for them; every reply is
 * counted and its last bytes checked, and a reply that does not end where
 * and as it should counts as an error (no parsing beyond that: replies have
 * a known length).
 *
 * Two shapes: {@link RawPipeline.measure} keeps N single-key requests in
 * flight, writing as many new ones as replies completed, a quarter of the
 * pipeline at a time (at once when none is left in flight, else once per
 * event-loop turn);
 * {@link RawPipeline.measureBatches} sends the multi-key gets of the batch
 * sizes a coalescing client produced, so a coalesced get is compared with the
 * same work for memcached.
 */
import { Buffer } from 'node:buffer'
import net from 'node:net'
import { performance } from 'node:perf_hooks'

/** Pre-built requests of equal length (one per key, in rotation) and the exact length of each reply. */
export interface RawRequest {
  readonly each: readonly Buffer[]
  readonly replyBytes: number
  /** The last bytes of every reply, checked for each one. */
  readonly replyEnd: string
}

/** What one window of a ceiling measured. */
export interface RawMeasured {
  /** Replies per second (keys per second for batches, as a coalescing client counts gets). */
  opsPerSec: number
  /** Replies that did not end as expected. */
  errors: number
  cpuUs: number
}

/** Checks reply terminators across reads: the stream position of each reply's end is known in advance. */
class ReplyChecker {
  /** Bytes received so far on the stream. */
  position = 0
  /** The last bytes before the current read (right-aligned), which a terminator may reach back into. */
  private readonly carry: Buffer

  constructor (private readonly end: Buffer) {
    this.carry = Buffer.alloc(end.length)
  }

  /** Whether the reply ending at stream offset `replyEnd` (within this read or before) ends with the terminator. */
  check (read: Buffer, replyEnd: number): boolean {
    const term = this.end
    const base = this.position
    for (let i = 0; i < term.length; i++) {
      const at = replyEnd - term.length + i
      const byte = at >= base ? read[at - base] : this.carry[term.length - (base - at)]
      if (byte !== term[i]) return false
    }
    return true
  }

  /** Moves past a read of `bytes`, keeping its last bytes for the next check. */
  advance (read: Buffer, bytes: number): void {
    const keep = Math.min(this.carry.length, bytes)
    if (keep === this.carry.length) {
      read.copy(this.carry, 0, bytes - keep, bytes)
    } else {
      this.carry.copy(this.carry, 0, keep, this.carry.length)
      read.copy(this.carry, this.carry.length - keep, bytes - keep, bytes)
    }
    this.position += bytes
  }
}

export class RawPipeline {
  /** What the current measurement does with each read. */
  private onBytes: (read: Buffer, bytes: number) => void = () => {}

  private constructor (private readonly socket: net.Socket) {}

  static async connect (host: string, port: number): Promise<RawPipeline> {
    // The socket's read callback needs the pipeline, which needs the socket.
    const created: { pipeline?: RawPipeline } = {}
    const socket = await connectReading(host, port, (read, bytes) => created.pipeline?.onBytes(read, bytes))
    return (created.pipeline = new RawPipeline(socket))
  }

  /** Sends the first request once and checks the reply is exactly as long as promised. */
  async verify (request: RawRequest): Promise<void> {
    const chunks: Buffer[] = []
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { this.onBytes = () => {}; reject(new Error('raw: no reply within 2 s')) }, 2000)
      this.onBytes = (read, bytes) => {
        chunks.push(Buffer.from(read.subarray(0, bytes)))
        received += bytes
        if (received >= request.replyBytes) { clearTimeout(timer); this.onBytes = () => {}; resolve() }
      }
      this.socket.write(request.each[0] as Buffer)
    })
    const reply = Buffer.concat(chunks)
    if (reply.length !== request.replyBytes || !reply.toString('latin1').endsWith(request.replyEnd)) {
      throw new Error(`raw: reply of ${reply.length} bytes, expected ${request.replyBytes} ending ${JSON.stringify(request.replyEnd)}: ${JSON.stringify(reply.subarray(0, 80).toString('latin1'))}`)
    }
  }

  /**
   * Keeps `inFlight` requests outstanding for warmup + window ms, the keys
   * rotating; counts and checks the replies of the window, then lets the
   * outstanding ones drain.
   */
  async measure (request: RawRequest, inFlight: number, warmupMs: number, windowMs: number): Promise<RawMeasured> {
    const size = (request.each[0] as Buffer).length
    if (request.each.some((each) => each.length !== size)) throw new Error('raw: requests must all have the same length')
    const rotation = request.each.length
    // The keys in the order the clients' loops ask for them: loop i's n-th
    // command reads key i + n·inFlight, and loops take turns (replies come
    // in order), so the keys rotate.
    let next = 0
    const take = (count: number): Buffer => {
      const chunks: Buffer[] = []
      for (const end = next + count; next < end; next++) chunks.push(request.each[next % rotation] as Buffer)
      return chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, count * size)
    }
    const checker = new ReplyChecker(Buffer.from(request.replyEnd, 'latin1'))
    const counts = { replies: 0, errors: 0 }
    let written = inFlight
    /** Replies completed whose replacements are not written yet. */
    let owed = 0
    // Replacements go out a quarter of the pipeline at a time: one request
    // per reply would keep memcached answering one get per read, a syscall
    // each way per command.
    const refill = Math.max(1, Math.floor(inFlight / 4))
    let stopping = false
    let drained: (() => void) | undefined
    const writeOwed = (): void => {
      if (stopping || owed === 0) return
      this.socket.write(take(owed))
      written += owed
      owed = 0
    }
    const flush = this.tickFlush(writeOwed)
    this.onBytes = (read, bytes) => {
      const before = counts.replies + counts.errors
      for (let end = (before + 1) * request.replyBytes; end <= checker.position + bytes; end += request.replyBytes) {
        if (checker.check(read, end)) counts.replies++
        else counts.errors++
      }
      checker.advance(read, bytes)
      owed += counts.replies + counts.errors - before
      if (stopping) {
        if (counts.replies + counts.errors >= written) drained?.()
      } else if (owed >= refill || counts.replies + counts.errors >= written) {
        flush(counts.replies + counts.errors >= written)
      }
    }
    return await this.window(take(inFlight), counts, warmupMs, windowMs, () => { stopping = true }, (resolve) => {
      if (counts.replies + counts.errors >= written) resolve()
      else drained = resolve
    })
  }

  /**
   * Multi-key gets of `sizes` keys (cycled), pre-built over `keys` in the
   * clients' order, written while the keys in flight stay within `inFlight`: the
   * batches a coalescing client with `inFlight` callers sent, without the
   * client. Counts keys, as the client counts gets.
   */
  async measureBatches (keys: readonly string[], valueBytes: number, sizes: readonly number[], inFlight: number, warmupMs: number, windowMs: number): Promise<RawMeasured> {
    if (sizes.length === 0 || sizes.some((n) => n < 1 || n > inFlight)) throw new Error(`raw: batch sizes must be 1 to ${inFlight}`)
    const block = valueBlockBytes(keys[0] as string, valueBytes)
    // Keys in the clients' order (see measure); each batch is built once,
    // the first time its start and size come round, and reused after.
    const built = new Map<number, Buffer>()
    let position = 0
    const request = (n: number): Buffer => {
      const id = (position % keys.length) * (inFlight + 1) + n
      let bytes = built.get(id)
      if (bytes === undefined) {
        const batch = Array.from({ length: n }, (_, i) => keys[(position + i) % keys.length] as string)
        bytes = Buffer.from(`get ${batch.join(' ')}\r\n`)
        built.set(id, bytes)
      }
      position += n
      return bytes
    }
    const checker = new ReplyChecker(Buffer.from('END\r\n'))
    /** Stream offsets where the replies in flight end, and their key counts. */
    const ends: number[] = []
    const inBatch: number[] = []
    let head = 0
    let streamEnd = 0
    let keysInFlight = 0
    let next = 0
    const counts = { replies: 0, errors: 0 }
    let stopping = false
    let drained: (() => void) | undefined
    const fill = (): Buffer[] => {
      const out: Buffer[] = []
      while (keysInFlight + (sizes[next] as number) <= inFlight) {
        const n = sizes[next] as number
        streamEnd += n * block + 5
        ends.push(streamEnd)
        inBatch.push(n)
        keysInFlight += n
        out.push(request(n))
        next = (next + 1) % sizes.length
      }
      return out
    }
    const write = (chunks: Buffer[]): void => {
      if (chunks.length === 1) this.socket.write(chunks[0] as Buffer)
      else if (chunks.length > 1) this.socket.write(Buffer.concat(chunks))
    }
    const flush = this.tickFlush(() => { if (!stopping) write(fill()) })
    this.onBytes = (read, bytes) => {
      while (head < ends.length && (ends[head] as number) <= checker.position + bytes) {
        const n = inBatch[head] as number
        if (checker.check(read, ends[head] as number)) counts.replies += n
        else counts.errors += n
        keysInFlight -= n
        head++
      }
      checker.advance(read, bytes)
      if (head > 4096) {
        ends.splice(0, head)
        inBatch.splice(0, head)
        head = 0
      }
      if (!stopping) flush(keysInFlight === 0)
      else if (keysInFlight === 0) drained?.()
    }
    return await this.window(Buffer.concat(fill()), counts, warmupMs, windowMs, () => { stopping = true }, (resolve) => {
      if (keysInFlight === 0) resolve()
      else drained = resolve
    })
  }

  /**
   * When to write the requests that replace answered ones: at once when
   * nothing is in flight (the server is idle), else once per turn of the
   * event loop for every reply read in it, as the clients write once per
   * tick: a write per read would cost a syscall per reply or two.
   */
  private tickFlush (write: () => void): (idle: boolean) => void {
    let scheduled = false
    const run = (): void => { scheduled = false; write() }
    return (idle) => {
      if (idle) write()
      else if (!scheduled) {
        scheduled = true
        setImmediate(run)
      }
    }
  }

  /** Writes `first`, measures the window over `counts`, stops writing and waits for the drain. */
  private async window (first: Buffer, counts: { replies: number, errors: number }, warmupMs: number, windowMs: number,
    stop: () => void, onDrained: (resolve: () => void) => void): Promise<RawMeasured> {
    this.socket.write(first)
    await sleep(warmupMs)
    const startReplies = counts.replies
    const startErrors = counts.errors
    const start = performance.now()
    const cpu = process.cpuUsage()
    await sleep(windowMs)
    const counted = counts.replies - startReplies
    const errors = counts.errors - startErrors
    const elapsed = performance.now() - start
    const used = process.cpuUsage(cpu)
    stop()
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('raw: replies did not drain within 5 s')), 5000)
      onDrained(() => { clearTimeout(timer); resolve() })
    })
    this.onBytes = () => {}
    return { opsPerSec: counted * 1000 / elapsed, errors, cpuUs: (used.user + used.system) / Math.max(1, counted) }
  }

  close (): void {
    this.socket.destroy()
  }
}

/**
 * A socket to `host:port`, Nagle off, that reads into one reused 64 KiB
 * buffer (`net` `onread`) and hands each read to `onRead`; resolves once
 * connected.
 */
export async function connectReading (host: string, port: number, onRead: (read: Buffer, bytes: number) => void): Promise<net.Socket> {
  const socket = net.connect({
    host,
    port,
    noDelay: true,
    onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: (bytes, buffer) => { onRead(buffer as Buffer, bytes); return true } }
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => { socket.setNoDelay(true); resolve() })
    socket.once('error', reject)
  })
  return socket
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** `get <key>\r\n` for items of `valueBytes` bytes stored with flags 0 (keys of equal length). */
export function rawGet (keys: readonly string[], valueBytes: number): RawRequest {
  return {
    each: keys.map((key) => Buffer.from(`get ${key}\r\n`)),
    replyBytes: valueBlockBytes(keys[0] as string, valueBytes) + 5,
    replyEnd: 'END\r\n'
  }
}

/** `get k1 k2 ... kN\r\n` for items of `valueBytes` bytes stored with flags 0. */
export function rawGetMulti (keys: readonly string[], valueBytes: number): RawRequest {
  return {
    each: [Buffer.from(`get ${keys.join(' ')}\r\n`)],
    replyBytes: keys.reduce((sum, key) => sum + valueBlockBytes(key, valueBytes), 0) + 5,
    replyEnd: 'END\r\n'
  }
}

/** `set <key> 0 0 <bytes>\r\n<value>\r\n`, answered `STORED\r\n` (keys of equal length). */
export function rawSet (keys: readonly string[], value: Buffer): RawRequest {
  return {
    each: keys.map((key) => Buffer.concat([Buffer.from(`set ${key} 0 0 ${value.length}\r\n`), value, Buffer.from('\r\n')])),
    replyBytes: 8,
    replyEnd: 'STORED\r\n'
  }
}

function valueBlockBytes (key: string, valueBytes: number): number {
  return `VALUE ${key} 0 ${valueBytes}\r\n`.length + valueBytes + 2
}
