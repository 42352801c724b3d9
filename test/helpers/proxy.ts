// A TCP proxy between the client under test and a real memcached, whose
// behaviour the test switches at run time to inject faults: delay, split,
// black-hole, garbage, reset mid-reply, refuse. It owns every socket it makes
// and destroys them all on close, so no test leaks a handle.
import { once } from 'node:events'
import net from 'node:net'
import { seededRandom } from './random.js'

const RESET_GRACE_MS = 10

type Mode =
  | { kind: 'pass' }
  | { kind: 'delay', ms: number }
  | { kind: 'split', maxPiece: number, random: () => number }
  | { kind: 'blackhole' }
  | { kind: 'garbage', bytes: Buffer }
  | { kind: 'resetAfter', limit: number }

interface Pair {
  client: net.Socket
  upstream: net.Socket | undefined
  // Every write to the client goes through this chain so that a delayed or
  // split chunk is never overtaken by a later one, even across mode switches.
  tail: Promise<void>
  // Reply bytes passed since the current resetAfter mode was set.
  replied: number
}

/** A fault-injection proxy on 127.0.0.1 in front of one `host:port`. */
export class FaultProxy {
  private server: net.Server | undefined
  private mode: Mode = { kind: 'pass' }
  private readonly pairs = new Set<Pair>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private closed = false
  private accepted = 0
  private fromClient = 0
  private fromServer = 0

  private constructor (private readonly target: { host: string, port: number }, private listenPort: number) {}

  /** Listens on a free 127.0.0.1 port, forwarding to `target` (mode: pass). */
  static async start (target: { host: string, port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(target, 0)
    await proxy.accept()
    return proxy
  }

  get port (): number { return this.listenPort }
  /** `host:port`, as the client's `servers` option takes it. */
  get address (): string { return `127.0.0.1:${this.listenPort}` }
  /** Connections accepted so far. */
  get connections (): number { return this.accepted }
  get bytesFromClient (): number { return this.fromClient }
  get bytesFromServer (): number { return this.fromServer }

  /** Forwards both ways untouched (the default). */
  pass (): void { this.mode = { kind: 'pass' } }
  /** Delays each server->client chunk by `ms`, keeping their order. */
  delay (ms: number): void { this.mode = { kind: 'delay', ms } }
  /** Forwards server->client bytes in seeded random pieces of 1..maxPiece bytes, one write per tick. */
  split (maxPiece = 7, seed = 1): void { this.mode = { kind: 'split', maxPiece, random: seededRandom(seed) } }
  /** Accepts and swallows everything: nothing is forwarded either way, not even replies already held by a delay. */
  blackhole (): void { this.mode = { kind: 'blackhole' } }
  /** Answers each client chunk with `bytes` instead of forwarding it. */
  garbage (bytes: Buffer): void { this.mode = { kind: 'garbage', bytes } }

  /** Forwards replies, but resets a connection once `limit` reply bytes have passed on it. */
  resetAfter (limit: number): void {
    this.mode = { kind: 'resetAfter', limit }
    for (const pair of this.pairs) pair.replied = 0
  }

  /** Stops listening, so new connects get ECONNREFUSED; open connections stay. The port is kept. */
  refuse (): void {
    // close() only stops accepting; its callback would wait for every open
    // connection, so it is not awaited here. The port is free once it returns.
    this.server?.close()
    this.server = undefined
  }

  /** Listens again, on the same port as before. */
  async accept (): Promise<void> {
    if (this.closed) throw new Error('proxy is closed')
    if (this.server !== undefined) return
    // Half-open on both legs, so an end is passed on only after the delayed
    // or split bytes queued before it.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => { this.onConnection(socket) })
    server.listen(this.listenPort, '127.0.0.1')
    // once() rejects on 'error', e.g. EADDRINUSE if the port was taken meanwhile.
    await once(server, 'listening')
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address')
    this.listenPort = address.port
    this.server = server
  }

  /** Resets every current connection now (the client sees ECONNRESET). */
  resetAll (): void {
    for (const pair of this.pairs) this.reset(pair)
  }

  /** Destroys every socket, pending delay and the listening server. */
  async close (): Promise<void> {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const pair of this.pairs) {
      pair.upstream?.destroy()
      pair.client.destroy()
    }
    this.pairs.clear()
    const server = this.server
    this.server = undefined
    if (server !== undefined) {
      const closed = once(server, 'close')
      server.close()
      await closed
    }
  }

  private onConnection (client: net.Socket): void {
    if (this.closed) { client.destroy(); return }
    this.accepted++
    const pair: Pair = { client, upstream: undefined, tail: Promise.resolve(), replied: 0 }
    this.pairs.add(pair)
    client.on('data', (chunk: Buffer) => { this.onClientData(pair, chunk) })
    client.on('end', () => {
      if (pair.upstream !== undefined) pair.upstream.end()
      else if (this.mode.kind !== 'blackhole') this.toClient(pair, async () => { pair.client.end() })
    })
    // A reset client is expected here; 'close' follows and cleans up.
    client.on('error', () => {})
    client.on('close', () => {
      this.pairs.delete(pair)
      pair.upstream?.destroy()
    })
  }

  private onClientData (pair: Pair, chunk: Buffer): void {
    this.fromClient += chunk.length
    const mode = this.mode
    if (mode.kind === 'blackhole') return
    if (mode.kind === 'garbage') {
      this.toClient(pair, async () => { this.send(pair, mode.bytes) })
      return
    }
    // The upstream is opened on the first forwarded byte, so a black-holed or
    // garbage connection never touches memcached; writes before connect are buffered.
    this.upstream(pair).write(chunk)
  }

  private upstream (pair: Pair): net.Socket {
    if (pair.upstream !== undefined) return pair.upstream
    const upstream = net.connect({ ...this.target, allowHalfOpen: true })
    pair.upstream = upstream
    upstream.on('data', (chunk: Buffer) => { this.onServerData(pair, chunk) })
    upstream.on('end', () => { this.toClient(pair, async () => { pair.client.end() }) })
    // memcached unreachable or gone: the client sees a reset, as it would
    // without the proxy (after a successful connect, though).
    upstream.on('error', () => { this.reset(pair) })
    return upstream
  }

  private onServerData (pair: Pair, chunk: Buffer): void {
    this.fromServer += chunk.length
    const mode = this.mode
    switch (mode.kind) {
      case 'pass':
      case 'garbage':
        this.toClient(pair, async () => { this.send(pair, chunk) })
        return
      case 'blackhole':
        return
      case 'delay': {
        const due = Date.now() + mode.ms
        this.toClient(pair, async () => {
          // A timer may fire a millisecond early against Date.now(); the
          // tests assert elapsed >= ms, so wait until the clock agrees.
          while (Date.now() < due) await this.sleep(due - Date.now())
          this.send(pair, chunk)
        })
        return
      }
      case 'split':
        this.toClient(pair, async () => {
          for (let at = 0; at < chunk.length && !pair.client.destroyed;) {
            const size = 1 + Math.floor(mode.random() * mode.maxPiece)
            this.send(pair, chunk.subarray(at, at + size))
            at += size
            await new Promise((resolve) => setImmediate(resolve))
          }
        })
        return
      case 'resetAfter': {
        const allowed = Math.max(0, mode.limit - pair.replied)
        pair.replied += chunk.length
        if (chunk.length < allowed) {
          this.toClient(pair, async () => { this.send(pair, chunk) })
          return
        }
        this.toClient(pair, async () => {
          if (allowed > 0) {
            await new Promise((resolve) => pair.client.write(chunk.subarray(0, allowed), resolve))
            // On Linux an RST that lands while those bytes are still unread
            // turns into a clean EOF after them, not ECONNRESET; a moment's
            // grace lets the peer read first, so it usually sees the reset.
            await this.sleep(RESET_GRACE_MS)
          }
          this.reset(pair)
        })
      }
    }
  }

  private toClient (pair: Pair, write: () => Promise<void>): void {
    pair.tail = pair.tail.then(async () => {
      if (!pair.client.destroyed) await write()
    }).catch(() => { pair.client.destroy() })
  }

  // Checked at delivery, not only on arrival, so a reply already held by a
  // delay or a split is swallowed too once the test black-holes the proxy.
  private send (pair: Pair, bytes: Buffer): void {
    if (this.mode.kind !== 'blackhole' && !pair.client.destroyed) pair.client.write(bytes)
  }

  private reset (pair: Pair): void {
    pair.upstream?.destroy()
    if (!pair.client.destroyed) pair.client.resetAndDestroy()
  }

  private async sleep (ms: number): Promise<void> {
    if (ms <= 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.timers.delete(timer); resolve() }, ms)
      this.timers.add(timer)
    })
  }
}
