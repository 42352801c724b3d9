/**
 * The ceiling: the most a Node process can do on one socket. Pre-built
 * requests are written `inFlight` at a time; every data event counts the
 * replies that completed (replies have a known, fixed length, so counting is
 * a division, no parsing) and writes as many new requests in one write.
 */
import { once } from 'node:events'
import net from 'node:net'
import { performance } from 'node:perf_hooks'

/** Pre-built requests of equal length (distinct keys) and the exact length of each reply. */
export interface RawRequest {
  readonly each: readonly Buffer[]
  readonly replyBytes: number
  /** The reply's last bytes, checked once before measuring. */
  readonly replyEnd: string
}

export class RawPipeline {
  private constructor (private readonly socket: net.Socket) {}

  static async connect (host: string, port: number): Promise<RawPipeline> {
    const socket = net.connect({ host, port, noDelay: true })
    await once(socket, 'connect')
    return new RawPipeline(socket)
  }

  /** Sends the request once and checks the reply is exactly as long as promised. */
  async verify (request: RawRequest): Promise<void> {
    const socket = this.socket
    const chunks: Buffer[] = []
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error('raw: no reply within 2 s')) }, 2000)
      const onData = (chunk: Buffer): void => {
        chunks.push(chunk)
        received += chunk.length
        if (received >= request.replyBytes) { cleanup(); resolve() }
      }
      const cleanup = (): void => { clearTimeout(timer); socket.off('data', onData) }
      socket.on('data', onData)
      socket.write(request.each[0] as Buffer)
    })
    const reply = Buffer.concat(chunks)
    if (reply.length !== request.replyBytes || !reply.toString('latin1').endsWith(request.replyEnd)) {
      throw new Error(`raw: reply of ${reply.length} bytes, expected ${request.replyBytes} ending ${JSON.stringify(request.replyEnd)}: ${JSON.stringify(reply.subarray(0, 80).toString('latin1'))}`)
    }
  }

  /**
   * Keeps `inFlight` requests outstanding for warmup + window ms, counts the
   * replies of the window, then lets the outstanding ones drain.
   */
  async measure (request: RawRequest, inFlight: number, warmupMs: number, windowMs: number): Promise<{ opsPerSec: number, cpuUs: number }> {
    const socket = this.socket
    const size = (request.each[0] as Buffer).length
    const batch = Buffer.concat(Array.from({ length: inFlight }, (_, i) => request.each[i % request.each.length] as Buffer))
    if (batch.length !== size * inFlight) throw new Error('raw: requests must all have the same length')
    let received = 0
    let replies = 0
    let written = inFlight
    let stopping = false
    let drained: (() => void) | undefined
    const onData = (chunk: Buffer): void => {
      received += chunk.length
      const done = Math.floor(received / request.replyBytes)
      const fresh = done - replies
      replies = done
      if (!stopping && fresh > 0) {
        socket.write(fresh === inFlight ? batch : batch.subarray(0, fresh * size))
        written += fresh
      }
      if (stopping && replies >= written) drained?.()
    }
    socket.on('data', onData)
    socket.write(batch)
    await sleep(warmupMs)
    const startReplies = replies
    const start = performance.now()
    const cpu = process.cpuUsage()
    await sleep(windowMs)
    const counted = replies - startReplies
    const elapsed = performance.now() - start
    const used = process.cpuUsage(cpu)
    stopping = true
    if (replies < written) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('raw: replies did not drain within 5 s')), 5000)
        drained = () => { clearTimeout(timer); resolve() }
      })
    }
    socket.off('data', onData)
    return { opsPerSec: counted * 1000 / elapsed, cpuUs: (used.user + used.system) / Math.max(1, counted) }
  }

  close (): void {
    this.socket.destroy()
  }
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
