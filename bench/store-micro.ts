/**
 * CPU of a session store's load (`getAndTouch`) and save (`cas`), as the
 * plugin calls them on the HTTP bench's routes, over an in-process fake
 * memcached: no socket, no syscall, no other process, so it varies far less
 * than the HTTP bench and is the way to compare two builds of the store path
 * (run both alternately, several times, and compare the medians).
 *
 * `net.connect` is replaced by a fake socket that answers each write with
 * memcached's replies a turn of the event loop later, through the caller's
 * own `onread` buffer. The fake server's own time is measured and left out.
 * Stores: ours (MemcachedStore), the HTTP bench's no-op floor and its
 * session-work floor (bench/http/floor-store.ts).
 *
 *   node build/bench/store-micro.js [ours|floor|work] [ro|rw] [--requests=40000] [--loops=32]
 */
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import net from 'node:net'
import { MemcachedStore, type SessionStore } from '../src/index.js'
import { FloorStore } from './http/floor-store.js'
import { median } from './lib/stats.js'

interface Item { value: string, cas: bigint }
/** The three stores measured all renew with the load, as the plugin does under `rolling`. */
type RenewingStore = SessionStore & Required<Pick<SessionStore, 'getAndTouch' | 'close'>>
interface OnRead { buffer: Buffer | (() => Buffer), callback: (bytes: number, buffer: Buffer) => boolean }

/** Nanoseconds the fake server spent, left out of the figures. */
let serverNs = 0n

/** The little of memcached the stores use: gets, touch, set, add, cas, mn. */
class FakeMemcached {
  private readonly items = new Map<string, Item>()
  private nextCas = 1n

  answer (request: string): string {
    let reply = ''
    for (let pos = 0; pos < request.length;) {
      const eol = request.indexOf('\r\n', pos)
      const words = request.slice(pos, eol).split(' ')
      pos = eol + 2
      const [verb = '', key = ''] = words
      if (verb === 'mn') reply += 'MN\r\n'
      else if (verb === 'gets') reply += this.gets(words.slice(1))
      else if (verb === 'touch') reply += this.items.has(key) ? 'TOUCHED\r\n' : 'NOT_FOUND\r\n'
      else {
        const bytes = Number(words[4])
        reply += this.store(verb, key, request.slice(pos, pos + bytes), words[5])
        pos += bytes + 2
      }
    }
    return reply
  }

  private gets (keys: string[]): string {
    let reply = ''
    for (const key of keys) {
      const item = this.items.get(key)
      if (item !== undefined) reply += `VALUE ${key} 0 ${Buffer.byteLength(item.value)} ${item.cas}\r\n${item.value}\r\n`
    }
    return `${reply}END\r\n`
  }

  private store (verb: string, key: string, value: string, cas: string | undefined): string {
    const item = this.items.get(key)
    if (verb === 'add' && item !== undefined) return 'NOT_STORED\r\n'
    if (verb === 'cas' && item === undefined) return 'NOT_FOUND\r\n'
    if (verb === 'cas' && String(item?.cas) !== cas) return 'EXISTS\r\n'
    this.items.set(key, { value, cas: this.nextCas++ })
    return 'STORED\r\n'
  }
}

/** What the client and the floors use of a socket; every reply arrives a turn of the event loop after its write. */
class FakeSocket extends EventEmitter {
  readonly writableNeedDrain = false

  constructor (private readonly server: FakeMemcached, private readonly onread: OnRead) {
    super()
    setImmediate(() => this.emit('connect'))
  }

  write (chunk: Buffer | string): boolean {
    const started = process.hrtime.bigint()
    const reply = this.server.answer(typeof chunk === 'string' ? chunk : chunk.toString('latin1'))
    serverNs += process.hrtime.bigint() - started
    setImmediate(() => {
      const buffer = typeof this.onread.buffer === 'function' ? this.onread.buffer() : this.onread.buffer
      this.onread.callback(buffer.write(reply, 0, 'latin1'), buffer)
    })
    return true
  }

  private closed = false

  setNoDelay (): this { return this }
  cork (): void {}
  uncork (): void {}
  destroy (): this { return this.end() }
  end (): this {
    if (!this.closed) setImmediate(() => this.emit('close'))
    this.closed = true
    return this
  }
}

async function openStore (kind: string): Promise<RenewingStore> {
  const server = new FakeMemcached()
  const fake = (options: { onread: OnRead }): FakeSocket => new FakeSocket(server, options.onread)
  ;(net as unknown as { connect: unknown }).connect = fake
  if (kind === 'floor') return await FloorStore.bare('127.0.0.1:11211')
  if (kind === 'work') return await FloorStore.sessionWork('127.0.0.1:11211')
  return new MemcachedStore({ servers: ['127.0.0.1:11211'] })
}

const TTL = 86_400

/** `requests` requests by `loops` concurrent loops over 100 sessions: a load, and on `rw` a save of the incremented counter. */
async function run (store: RenewingStore, keys: string[], rw: boolean, requests: number, loops: number): Promise<void> {
  let left = requests
  const createdAt = Math.floor(Date.now() / 1000)
  const loop = async (first: number): Promise<void> => {
    for (let n = first; left-- > 0; n += 7) {
      const key = keys[n % keys.length] as string
      const found = await store.getAndTouch(key, TTL)
      if (!rw || found === undefined) continue
      const count = Number(found.value.slice(found.value.indexOf('"n":') + 4, -1)) + 1
      await store.cas(key, `${createdAt}::{"n":${count}}`, found.version, TTL)
    }
  }
  await Promise.all(Array.from({ length: loops }, async (_, i) => { await loop(i) }))
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const positional = args.filter((arg) => !arg.startsWith('--'))
  const kind = positional[0] ?? 'ours'
  const route = positional[1] ?? 'ro'
  const option = (name: string, fallback: number): number => Number(args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1] ?? fallback)
  const requests = option('requests', 40_000)
  const loops = option('loops', 32)
  if (!['ours', 'floor', 'work'].includes(kind) || !['ro', 'rw'].includes(route)) {
    throw new Error('usage: store-micro.js [ours|floor|work] [ro|rw] [--requests=N] [--loops=N]')
  }
  const store = await openStore(kind)
  const keys = Array.from({ length: 100 }, (_, i) => `sess:${createHash('sha256').update(String(i)).digest('base64url')}`)
  const createdAt = Math.floor(Date.now() / 1000)
  for (const key of keys) await store.add(key, `${createdAt}::{"n":0}`, TTL)
  await run(store, keys, route === 'rw', requests, loops)
  const perRequest: number[] = []
  for (let round = 0; round < 9; round++) {
    serverNs = 0n
    const started = process.hrtime.bigint()
    await run(store, keys, route === 'rw', requests, loops)
    perRequest.push(Number(process.hrtime.bigint() - started - serverNs) / requests / 1000)
  }
  // All in one thread and CPU-bound: wall time is CPU time; the minimum is the least disturbed round.
  process.stdout.write(`${kind} ${route}: ${Math.min(...perRequest).toFixed(3)} µs per request (min of 9 rounds; median ${median(perRequest).toFixed(3)})\n`)
  await store.close()
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
