// Faults between MemcachedClient and real memcached processes, injected by a
// TCP proxy the tests own (FaultProxy) or by signalling memcached itself:
// killed mid-flight, black-holed, garbage, refused, reset inside a VALUE,
// replies split into tiny pieces, a dead server in a cluster, a full queue,
// and close(). Every command must settle with the right code within its
// timeout plus a margin, the client must recover once the fault is gone, and
// no promise may be left rejected without a handler.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemcachedClient, type MemcachedClientOptions } from '../../src/protocol/client.js'
import { MemcachedError, type MemcachedErrorCode } from '../../src/protocol/errors.js'
import { MemcachedServer, freePort, type MemcachedOptions } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
import { waitFor } from '../helpers/wait.js'

// Installed before anything runs; the last test asserts it stayed empty.
const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })

const TIMEOUT = 200
const RETRY_DELAY = 200
/** Slack on top of a timeout for a loaded machine; never a speed requirement. */
const MARGIN = 500
/** How long a recovery may take once the fault is gone. */
const RECOVERY = RETRY_DELAY + 1000
const FAST: MemcachedClientOptions = { timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: RETRY_DELAY, failures: 2 }
/** Per-test ceiling, so a command that never settles fails its test instead of hanging the run. */
const TEST = { timeout: 20_000 }

// ---- helpers ----

/** How one call ended, and how long after the call. */
interface Outcome<T> {
  readonly ok: boolean
  readonly value: T | undefined
  readonly error: unknown
  readonly ms: number
}

/** Calls at once (synchronously) and records the result; never rejects. */
async function settle<T> (call: () => Promise<T>): Promise<Outcome<T>> {
  const start = performance.now()
  try {
    const value = await call()
    return { ok: true, value, error: undefined, ms: performance.now() - start }
  } catch (error) {
    return { ok: false, value: undefined, error, ms: performance.now() - start }
  }
}

/** A short description of a result, for failure messages. */
function show (value: unknown): string {
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes${value.length <= 40 ? ` ${JSON.stringify(value.toString('latin1'))}` : ''}`
  if (value instanceof Map) return `a Map of ${JSON.stringify([...value.keys()])}`
  return typeof value === 'bigint' ? `${value}n` : String(value)
}

function asMemcachedError (error: unknown, what: string): MemcachedError {
  assert.ok(error instanceof MemcachedError, `${what}: expected a MemcachedError, got ${String(error)}`)
  return error
}

/** Asserts the call rejected with one of `codes`, within `ceiling` ms of the call. */
function assertRejected (outcome: Outcome<unknown>, codes: readonly MemcachedErrorCode[], what: string, ceiling = TIMEOUT + MARGIN): MemcachedError {
  assert.ok(!outcome.ok, `${what}: expected ${codes.join(' or ')}, but it resolved ${show(outcome.value)}`)
  const error = asMemcachedError(outcome.error, what)
  assert.ok(codes.includes(error.code), `${what}: expected ${codes.join(' or ')}, got ${error.code} (${error.message})`)
  assert.ok(outcome.ms <= ceiling, `${what}: settled after ${outcome.ms.toFixed(0)} ms, more than ${ceiling} ms`)
  return error
}

/**
 * Retries `attempt` every 20 ms until it resolves, for at most `limitMs`.
 * Every failure on the way must be a MemcachedError with one of `allowed`
 * codes, so an unexpected error fails at once instead of being retried.
 */
async function eventually<T> (what: string, limitMs: number, allowed: readonly MemcachedErrorCode[], attempt: () => Promise<T>): Promise<{ value: T, ms: number }> {
  const start = performance.now()
  for (;;) {
    const outcome = await settle(attempt)
    const ms = performance.now() - start
    if (outcome.ok) return { value: outcome.value as T, ms }
    const error = asMemcachedError(outcome.error, what)
    assert.ok(allowed.includes(error.code), `${what}: unexpected ${error.code} (${error.message})`)
    assert.ok(ms <= limitMs, `${what}: still failing after ${ms.toFixed(0)} ms (limit ${limitMs} ms): ${error.code} ${error.message}`)
    await sleep(20)
  }
}

/** `promise`, or a failure once `ms` have passed without it settling. */
async function bounded<T> (what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what}: did not settle within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

async function stopProcess (server: MemcachedServer): Promise<void> {
  const pid = server.pid
  assert.ok(pid !== undefined, 'memcached is running')
  // Frozen, memcached reads nothing: what the client writes now is never answered.
  process.kill(pid, 'SIGSTOP')
  // The signal lands asynchronously; wait until every thread is stopped, or a
  // command sent right after could still be answered (seen under CI load).
  for (let attempt = 0; attempt < 400; attempt++) {
    if (allThreadsStopped(pid)) return
    await sleep(5)
  }
  assert.fail(`memcached ${pid} did not stop`)
}

function allThreadsStopped (pid: number): boolean {
  // Without /proc (macOS), trust a short pause instead.
  if (!existsSync('/proc/self/task')) return Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100) === 'timed-out'
  const tasks = readdirSync(`/proc/${pid}/task`)
  return tasks.every((task) => /^\d+ \(.*\) T /.test(readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8')))
}

/** What a describe block started; its after hook closes clients, then proxies, then servers. */
class Scope {
  private readonly clients: MemcachedClient[] = []
  private readonly proxies: FaultProxy[] = []
  private readonly servers: MemcachedServer[] = []

  client (servers: string[], options: MemcachedClientOptions = {}): MemcachedClient {
    const client = new MemcachedClient({ ...FAST, ...options, servers })
    this.clients.push(client)
    return client
  }

  async server (options?: MemcachedOptions): Promise<MemcachedServer> {
    const server = await MemcachedServer.start(options)
    this.servers.push(server)
    return server
  }

  /** A fresh memcached behind a fresh proxy (mode pass). */
  async backend (): Promise<{ server: MemcachedServer, proxy: FaultProxy }> {
    const server = await this.server()
    const proxy = await FaultProxy.start({ host: server.host, port: server.port })
    this.proxies.push(proxy)
    return { server, proxy }
  }

  async close (): Promise<void> {
    // Some servers may be frozen (SIGSTOP): kill -9 works on them, and resets their sockets.
    const closing = Promise.all(this.clients.map(async (client) => { await client.close() }))
    await bounded('closing the clients', 15_000, closing)
    await Promise.all(this.proxies.map(async (proxy) => { await proxy.close() }))
    await Promise.all(this.servers.map(async (server) => { await server.kill() }))
  }
}

// ---- the faults ----

describe('server killed mid-flight', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('150 commands in flight all settle with MC_CONNECTION or MC_TIMEOUT, later ones with MC_NO_SERVERS, and the client works again after a restart', TEST, async () => {
    const { server, proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    await client.set('killed:warm', 'x')

    await stopProcess(server)
    const sent = proxy.bytesFromClient
    const inFlight = Array.from({ length: 150 }, async (_, i) => await settle(async (): Promise<unknown> => {
      if (i % 3 === 0) return await client.get(`killed:${i}`)
      if (i % 3 === 1) return await client.set(`killed:${i}`, `value ${i}`)
      return await client.incr(`killed:n${i}`)
    }))
    // Written and passed on by the proxy, unanswered: in flight, not merely queued.
    await waitFor('the commands to reach the proxy', 2000, () => proxy.bytesFromClient > sent)
    await server.kill()
    for (const [i, outcome] of (await Promise.all(inFlight)).entries()) {
      assertRejected(outcome, ['MC_CONNECTION', 'MC_TIMEOUT'], `in-flight command ${i}`)
    }

    // From now on each command fails fast until the server leaves the ring, then MC_NO_SERVERS.
    const seen: MemcachedErrorCode[] = []
    while (!seen.includes('MC_NO_SERVERS')) {
      assert.ok(seen.length < 200, `the dead server was never ejected; saw ${seen.join(' ')}`)
      const outcome = await settle(async () => await client.get('killed:after'))
      seen.push(assertRejected(outcome, ['MC_CONNECTION', 'MC_TIMEOUT', 'MC_NO_SERVERS'], 'a get after the kill').code)
      await sleep(10)
    }
    assert.deepEqual(client.liveServers, [])

    await server.restart()
    const { value } = await eventually('set and get after the restart', RECOVERY, ['MC_NO_SERVERS', 'MC_CONNECTION', 'MC_TIMEOUT'], async () => {
      await client.set('killed:back', 'again')
      return await client.get('killed:back')
    })
    assert.equal(value?.toString(), 'again')
    assert.deepEqual(client.liveServers, [proxy.address])
  })
})

describe('black-holed server (accepts, never answers)', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('a get rejects MC_TIMEOUT; the commands in flight with it reject too', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    await client.set('hole:key', 'x')
    proxy.blackhole()

    const first = settle(async () => await client.get('hole:key'))
    const others = [
      settle(async () => await client.set('hole:set', 'y')),
      settle(async () => await client.incr('hole:n')),
      settle(async () => await client.getMulti(['hole:a', 'hole:b'])),
      settle(async () => await client.gets('hole:key')),
      settle(async () => await client.stats()),
      settle(async () => await client.version())
    ]
    await sleep(50)
    const later = settle(async () => await client.delete('hole:key'))

    const timedOut = await first
    assertRejected(timedOut, ['MC_TIMEOUT'], 'the first get')
    // The client's deadline starts after this test's clock did: it cannot have given up early.
    assert.ok(timedOut.ms >= TIMEOUT - 1, `timed out after ${timedOut.ms.toFixed(1)} ms, before its ${TIMEOUT} ms`)
    for (const [i, outcome] of (await Promise.all(others)).entries()) {
      assertRejected(outcome, ['MC_TIMEOUT', 'MC_CONNECTION'], `command ${i} sent with it`)
    }
    assertRejected(await later, ['MC_TIMEOUT', 'MC_CONNECTION'], 'a delete sent 50 ms later')

    proxy.pass()
    const { value } = await eventually('a get once the proxy passes again', RECOVERY, ['MC_CONNECTION', 'MC_NO_SERVERS'], async () => await client.get('hole:key'))
    assert.equal(value?.toString(), 'x')
  })

  const readers: Array<{ name: string, options: MemcachedClientOptions, read: (client: MemcachedClient, key: string) => Promise<Buffer | undefined> }> = [
    { name: 'get', options: {}, read: async (client, key) => await client.get(key) },
    { name: 'get without coalescing', options: { coalesceGets: false }, read: async (client, key) => await client.get(key) },
    { name: 'gets', options: {}, read: async (client, key) => (await client.gets(key))?.value },
    { name: 'gat', options: {}, read: async (client, key) => await client.gat(key, 0) }
  ]
  for (const { name, options, read } of readers) {
    test(`a late reply is never handed to a later caller (${name})`, TEST, async () => {
      const { proxy } = await scope.backend()
      const client = scope.client([proxy.address], options)
      await client.set('late:a', 'the value of a')
      await client.set('late:b', 'B')

      // Replies now arrive after three times the timeout: the first read times out...
      proxy.delay(TIMEOUT * 3)
      assertRejected(await settle(async () => await read(client, 'late:a')), ['MC_TIMEOUT'], 'the delayed read')
      // ...and b is asked for at once, while a's reply is still on its way. A
      // client that kept that stream would take a's reply for b's.
      proxy.pass()
      const b = await settle(async () => await read(client, 'late:b'))
      assert.ok(b.ok, `b, read right after a timed out: ${String(b.error)}`)
      assert.equal(b.value?.toString(), 'B')
      // Read long before a's reply came (2 * TIMEOUT after the timeout), or the test proves nothing.
      assert.ok(b.ms < TIMEOUT * 2, `b was read ${b.ms.toFixed(0)} ms after a timed out: too late to tell`)
      assert.equal((await read(client, 'late:a'))?.toString(), 'the value of a')
      // a's late reply has reached the proxy by now; it must not surface anywhere.
      await sleep(TIMEOUT * 2)
      assert.equal((await read(client, 'late:b'))?.toString(), 'B')
      assert.equal((await read(client, 'late:a'))?.toString(), 'the value of a')
    })
  }

  test('one command timeout is one timeout: the commands sent right after it are answered, none fails fast', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    for (let i = 0; i < 20; i++) await client.set(`one:${i}`, `value ${i}`)
    const connectionsBefore = proxy.connections

    proxy.delay(TIMEOUT * 3)
    assertRejected(await settle(async () => await client.get('one:0')), ['MC_TIMEOUT'], 'the slow get')
    proxy.pass()
    // Sent in the same tick as the timeout's rejection reached us: a client in
    // fail-fast would refuse them with MC_CONNECTION "next attempt soon".
    const outcomes = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
      await settle(async (): Promise<unknown> => i % 2 === 0 ? (await client.get(`one:${i}`))?.toString() : await client.incr('one:n'))))
    const failed = outcomes.filter((outcome) => !outcome.ok).map((outcome) => String(outcome.error))
    assert.deepEqual(failed, [], `${failed.length} of 20 commands after one timeout failed`)
    for (let i = 0; i < 20; i += 2) assert.equal(outcomes[i]?.value, `value ${i}`, `get ${i} after the timeout`)
    // The socket was still replaced: the slow reply went to a stream nobody reads.
    assert.equal(proxy.connections, connectionsBefore + 1, 'one new connection after the timeout')
    assert.deepEqual(client.liveServers, [proxy.address], 'not ejected')
    await sleep(TIMEOUT * 3)
    assert.equal((await client.get('one:1'))?.toString(), 'value 1')
  })

  test('a command timeout still counts toward failures: two in a row eject the server (failures: 2)', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address], { failures: 2 })
    await client.set('count:a', 'A')
    proxy.delay(TIMEOUT * 3)
    assertRejected(await settle(async () => await client.get('count:a')), ['MC_TIMEOUT'], 'the first slow get')
    assert.deepEqual(client.liveServers, [proxy.address], 'one timeout: still on the ring')
    assertRejected(await settle(async () => await client.get('count:a')), ['MC_TIMEOUT'], 'the second slow get')
    assert.deepEqual(client.liveServers, [], 'two timeouts in a row: ejected')
    assertRejected(await settle(async () => await client.get('count:a')), ['MC_NO_SERVERS'], 'a get once ejected', MARGIN)
    proxy.pass()
    const { value } = await eventually('a get once the proxy passes again', RECOVERY, ['MC_NO_SERVERS', 'MC_TIMEOUT', 'MC_CONNECTION'], async () => await client.get('count:a'))
    assert.equal(value?.toString(), 'A')
  })

  test('after a command timeout, a reconnect that is refused starts the backoff', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address], { failures: 10 })
    await client.set('refuse:a', 'A')
    proxy.delay(TIMEOUT * 3)
    assertRejected(await settle(async () => await client.get('refuse:a')), ['MC_TIMEOUT'], 'the slow get')
    proxy.refuse()
    const refused = assertRejected(await settle(async () => await client.get('refuse:a')), ['MC_CONNECTION'], 'the reconnect', MARGIN)
    assert.match(refused.message, /ECONNREFUSED/)
    const fastFail = assertRejected(await settle(async () => await client.get('refuse:a')), ['MC_CONNECTION'], 'the next get', MARGIN)
    assert.match(fastFail.message, /next attempt soon/)
    await proxy.accept()
    proxy.pass()
    const { value } = await eventually('a get once the proxy accepts again', RECOVERY, ['MC_CONNECTION'], async () => await client.get('refuse:a'))
    assert.equal(value?.toString(), 'A')
  })

  test('commands sent in the same tick to a silent server all reject MC_TIMEOUT', TEST, async () => {
    // Ten commands issued together, written together, never answered: each
    // waited its whole timeout. With a deadline per command, read from the
    // clock one by one, the deadlines trailed one another by a fraction of a
    // millisecond; when the timer fired among them, the commands before that
    // point got MC_TIMEOUT and the rest MC_CONNECTION from the reset. That
    // happened in a few percent of rounds, so run many.
    const { proxy } = await scope.backend()
    proxy.blackhole()
    const mixed: string[] = []
    let rounds = 0
    await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
      // Staggered, so the workers' timers fire independently.
      await sleep(worker * 2)
      for (let round = 0; round < 40; round++) {
        const client = scope.client([proxy.address], { timeout: 15, connectTimeout: 1000, failures: 1_000_000 })
        const outcomes = await Promise.all(Array.from({ length: 10 }, async (_, i) =>
          await settle(async (): Promise<unknown> => i % 2 === 0 ? await client.incr(`tick:${i}`) : await client.set(`tick:${i}`, 'v'))))
        await client.close()
        rounds++
        const codes = outcomes.map((outcome, i) => asMemcachedError(outcome.error, `command ${i}`).code)
        if (codes.some((code) => code !== 'MC_TIMEOUT')) mixed.push(codes.join(' '))
      }
    }))
    assert.equal(mixed.length, 0, `${mixed.length} of ${rounds} rounds of same-tick commands mixed MC_TIMEOUT with other codes, e.g. ${mixed[0] ?? ''}`)
  })
})

describe('garbage replies', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  type Call = 'get' | 'set' | 'incr' | 'stats'
  const calls: Record<Call, (client: MemcachedClient) => Promise<unknown>> = {
    get: async (client) => await client.get('garbage:key'),
    set: async (client) => { await client.set('garbage:set', 'x') },
    incr: async (client) => await client.incr('garbage:n'),
    stats: async (client) => await client.stats()
  }
  const cases: Array<{ name: string, bytes: Buffer, calls: Call[], codes: MemcachedErrorCode[] }> = [
    { name: 'a text line that is no reply', bytes: Buffer.from('HELLO WORLD\r\n'), calls: ['get', 'set', 'incr', 'stats'], codes: ['MC_PROTOCOL'] },
    { name: 'binary junk ending in a bare LF', bytes: Buffer.from([0x81, 0x0c, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x0a]), calls: ['get', 'set', 'incr', 'stats'], codes: ['MC_PROTOCOL'] },
    { name: 'binary junk ending in CRLF', bytes: Buffer.from([0x00, 0x01, 0x80, 0xff, 0x1b, 0x5b, 0x0d, 0x0a]), calls: ['get', 'set', 'incr', 'stats'], codes: ['MC_PROTOCOL'] },
    { name: '16 KiB of junk without a line end', bytes: Buffer.alloc(16 * 1024, 0xa5), calls: ['get', 'set'], codes: ['MC_PROTOCOL'] },
    // A few bytes that could still become a line: the client may wait for the rest, but not past its timeout.
    { name: 'binary junk without a line end', bytes: Buffer.from([0x81, 0x00, 0x00, 0x00, 0xff]), calls: ['get'], codes: ['MC_PROTOCOL', 'MC_TIMEOUT'] },
    { name: 'a VALUE for a key nobody asked for', bytes: Buffer.from('VALUE someone-else 0 3\r\nabc\r\nEND\r\n'), calls: ['get', 'set'], codes: ['MC_PROTOCOL'] },
    { name: 'a malformed VALUE line', bytes: Buffer.from('VALUE garbage:key x y\r\n'), calls: ['get'], codes: ['MC_PROTOCOL'] },
    { name: 'the reply of another command', bytes: Buffer.from('STORED\r\n'), calls: ['get', 'incr'], codes: ['MC_PROTOCOL'] },
    { name: 'an incr result above 2^64', bytes: Buffer.from('18446744073709551616\r\n'), calls: ['incr'], codes: ['MC_PROTOCOL'] }
  ]

  test('each garbage reply rejects with MC_PROTOCOL, and the client recovers after pass()', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    await client.set('garbage:key', 'good value')
    for (const { name, bytes, calls: names, codes } of cases) {
      for (const call of names) {
        proxy.garbage(bytes)
        assertRejected(await settle(async () => await calls[call](client)), codes, `${call} answered with ${name}`)
        proxy.pass()
        // One failure each time, so the server is never ejected: only the reconnect backoff is in the way.
        const { value } = await eventually(`get after ${name}`, RECOVERY, ['MC_CONNECTION'], async () => await client.get('garbage:key'))
        assert.equal(value?.toString(), 'good value', `recovered after ${call} answered with ${name}`)
      }
    }
  })

  test('every retrieval (get, gets, gat, getMulti, with or without coalescing) rejects MC_PROTOCOL on a VALUE for a key it never asked for', TEST, async () => {
    // Once only the coalesced get (GetBatch) checked the key; the other
    // retrievals (SingleRequest) took any VALUE and handed it to the caller.
    const { proxy } = await scope.backend()
    proxy.garbage(Buffer.from('VALUE someone-else 0 3\r\nabc\r\nEND\r\n'))
    const results: string[] = []
    for (const [name, options, call] of [
      ['get', {}, async (client: MemcachedClient) => await client.get('mine')],
      ['get (coalesceGets: false)', { coalesceGets: false }, async (client: MemcachedClient) => await client.get('mine')],
      ['gets (coalesceGets: false)', { coalesceGets: false }, async (client: MemcachedClient) => await client.gets('mine')],
      ['gat', {}, async (client: MemcachedClient) => await client.gat('mine', 0)],
      ['getMulti', {}, async (client: MemcachedClient) => await client.getMulti(['mine', 'yours'])]
    ] as const) {
      // A client each, so that no failure count carries over.
      const client = scope.client([proxy.address], options)
      const outcome = await settle<unknown>(async () => await call(client))
      if (outcome.ok) {
        results.push(`${name} resolved ${show(outcome.value)}`)
      } else {
        const error = asMemcachedError(outcome.error, name)
        if (error.code !== 'MC_PROTOCOL') results.push(`${name} rejected ${error.code}`)
      }
    }
    assert.deepEqual(results, [], 'every retrieval answered with a VALUE of another key must reject MC_PROTOCOL')
  })
})

describe('connection refused', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('rejects MC_CONNECTION at once, MC_NO_SERVERS once ejected, and works again after accept()', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    proxy.refuse()

    const first = assertRejected(await settle(async () => await client.get('refused:key')), ['MC_CONNECTION'], 'the first get')
    assert.equal((first.cause as NodeJS.ErrnoException | undefined)?.code, 'ECONNREFUSED', 'the socket error is the cause')
    assert.equal(first.server, proxy.address)

    const seen: MemcachedErrorCode[] = []
    while (!seen.includes('MC_NO_SERVERS')) {
      assert.ok(seen.length < 200, `never ejected after ${FAST.failures} refused connects; saw ${seen.join(' ')}`)
      seen.push(assertRejected(await settle(async () => await client.set('refused:key', 'v')), ['MC_CONNECTION', 'MC_NO_SERVERS'], 'a set while refused').code)
      await sleep(10)
    }
    assert.deepEqual(client.liveServers, [])
    assertRejected(await settle(async () => await client.getMulti(['refused:a', 'refused:b'])), ['MC_NO_SERVERS'], 'getMulti while ejected')

    await proxy.accept()
    const { value } = await eventually('set and get after accept()', RECOVERY, ['MC_NO_SERVERS', 'MC_CONNECTION'], async () => {
      await client.set('refused:key', 'back')
      return await client.get('refused:key')
    })
    assert.equal(value?.toString(), 'back')
    assert.deepEqual(client.liveServers, [proxy.address])
  })
})

describe('reset in the middle of a reply', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('a reset inside a 100 KiB VALUE rejects MC_CONNECTION; after pass() the value comes back byte-exact', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    const value = randomBytes(100 * 1024)
    await client.set('reset:big', value)
    const header = Buffer.byteLength(`VALUE reset:big 0 ${value.length}\r\n`)
    const reads: Array<[string, () => Promise<Buffer | undefined>]> = [
      ['get', async () => await client.get('reset:big')],
      ['gets', async () => (await client.gets('reset:big'))?.value],
      ['getMulti', async () => (await client.getMulti(['reset:big', 'reset:missing'])).get('reset:big')]
    ]
    async function recover (name: string, read: () => Promise<Buffer | undefined>): Promise<void> {
      proxy.pass()
      const { value: back } = await eventually(`${name} after a reset`, RECOVERY, ['MC_CONNECTION'], read)
      assert.ok(back !== undefined && back.equals(value), `${name} after a reset returns the value byte-exact`)
    }
    // Inside the VALUE line, inside the data, and between the CR and LF after
    // the data (gets has a longer VALUE line: still inside its data).
    for (const limit of [3, 5000, header + value.length + 1]) {
      for (const [name, read] of reads) {
        proxy.resetAfter(limit)
        // Reaches the client as ECONNRESET or as a plain close after the partial reply: the same failure.
        assertRejected(await settle(read), ['MC_CONNECTION'], `${name} reset after ${limit} reply bytes`)
        await recover(name, read)
      }
    }
    // Inside the END line: the value itself arrived whole, so it may be
    // handed over; but never a partial or other value.
    for (const [name, read] of reads) {
      proxy.resetAfter(header + value.length + 4)
      const outcome = await settle(read)
      if (outcome.ok) assert.ok(outcome.value?.equals(value), `${name} reset inside END resolved ${show(outcome.value)}`)
      else assertRejected(outcome, ['MC_CONNECTION'], `${name} reset inside END`)
      await recover(name, read)
    }
  })
})

describe('split replies', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('replies split into 1..7-byte pieces: a mix of commands and a 300 KiB value all resolve correctly', { timeout: 30_000 }, async () => {
    const { proxy } = await scope.backend()
    // Pieces go out one per tick: the 300 KiB reply takes a while, which is not what this test is about.
    const client = scope.client([proxy.address], { timeout: 15_000 })
    const big = randomBytes(300 * 1024)
    await client.set('split:a', 'alpha', { flags: 42 })
    await client.set('split:b', 'beta')
    await client.set('split:n', '10')
    await client.set('split:big', big)

    for (const [maxPiece, seed] of [[7, 1], [1, 2], [3, 3]] as const) {
      proxy.split(maxPiece, seed)
      const [a, item, multi, stored, counter, stats, version, added, touched, missing] = await Promise.all([
        client.get('split:a'),
        client.gets('split:a'),
        client.getMulti(['split:a', 'split:b', 'split:missing']),
        client.set(`split:new${seed}`, `new ${seed}`),
        client.incr('split:n', 5),
        client.stats(),
        client.version(),
        client.add('split:a', 'not stored'),
        client.touch('split:b', 0),
        client.get('split:missing')
      ])
      const round = `split(${maxPiece}, ${seed})`
      assert.equal(a?.toString(), 'alpha', round)
      assert.equal(item?.value.toString(), 'alpha', round)
      assert.equal(item?.flags, 42, round)
      assert.ok(typeof item?.cas === 'bigint' && item.cas > 0n, round)
      assert.deepEqual([...multi].map(([key, value]) => [key, value.toString()]).sort(), [['split:a', 'alpha'], ['split:b', 'beta']], round)
      assert.equal(stored, undefined, round)
      assert.equal(typeof counter, 'bigint', round)
      assert.ok(Number(stats[proxy.address]?.pid) > 0, `${round}: stats has the pid`)
      assert.match(version[proxy.address] ?? '', /^\d+\.\d+\.\d+/, round)
      assert.equal(added, false, round)
      assert.equal(touched, true, round)
      assert.equal(missing, undefined, round)
      assert.equal((await client.get(`split:new${seed}`))?.toString(), `new ${seed}`, round)
    }
    assert.equal(await client.get('split:n').then((value) => value?.toString()), '25')

    proxy.split()
    const [bigValue, small] = await Promise.all([client.get('split:big'), client.get('split:b')])
    assert.ok(bigValue?.equals(big), 'the 300 KiB value is byte-exact')
    assert.equal(small?.toString(), 'beta')
  })
})

describe('multi-server failover', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('a dead server leaves the ring: its keys go to the others, the other keys never move; back after a restart', TEST, async () => {
    const trio = await Promise.all([scope.server(), scope.server(), scope.server()])
    const addresses = trio.map((server) => server.address)
    const client = scope.client(addresses)
    const victim = trio[1] as MemcachedServer
    const keys = Array.from({ length: 300 }, (_, i) => `failover:${i}`)
    const owner = new Map(keys.map((key) => [key, client.serversFor(key, 1)[0]]))
    const victimKeys = keys.filter((key) => owner.get(key) === victim.address)
    const otherKeys = keys.filter((key) => owner.get(key) !== victim.address)
    assert.ok(victimKeys.length >= 30 && otherKeys.length >= 100, `a fair split of the keys: ${victimKeys.length} on the victim`)
    await Promise.all(keys.map(async (key) => { await client.set(key, `v ${key}`) }))

    await victim.kill()
    const firstKey = victimKeys[0] as string
    assertRejected(await settle(async () => { await client.set(firstKey, 'x') }), ['MC_CONNECTION', 'MC_TIMEOUT'], 'a key of the dead server, at first')
    // Keep writing one of its keys: it fails until the server is ejected, then lands elsewhere.
    await eventually('a key of the dead server', 2000, ['MC_CONNECTION', 'MC_TIMEOUT'], async () => { await client.set(firstKey, 'moved') })
    assert.deepEqual(client.liveServers, addresses.filter((address) => address !== victim.address))

    for (const key of otherKeys) assert.equal(client.serversFor(key, 1)[0], owner.get(key), `${key} stayed on its server`)
    for (const key of victimKeys) assert.notEqual(client.serversFor(key, 1)[0], victim.address, `${key} left the dead server`)
    const stayed = await Promise.all(otherKeys.map(async (key) => (await client.get(key))?.toString()))
    assert.deepEqual(stayed, otherKeys.map((key) => `v ${key}`), 'the keys of live servers kept their values')
    await Promise.all(victimKeys.map(async (key) => { await client.set(key, `moved ${key}`) }))
    const moved = await Promise.all(victimKeys.map(async (key) => (await client.get(key))?.toString()))
    assert.deepEqual(moved, victimKeys.map((key) => `moved ${key}`))

    await victim.restart()
    await waitFor('the restarted server to rejoin the ring', RECOVERY, () => client.liveServers.includes(victim.address))
    assert.deepEqual(client.liveServers, addresses)
    for (const key of keys) assert.equal(client.serversFor(key, 1)[0], owner.get(key), `${key} maps to its own server again`)
    await Promise.all(victimKeys.map(async (key) => { await client.set(key, `home ${key}`) }))
    // Read straight from the restarted server: the keys really went back to it.
    const direct = scope.client([victim.address])
    const home = await direct.getMulti(victimKeys)
    assert.deepEqual(victimKeys.map((key) => home.get(key)?.toString()), victimKeys.map((key) => `home ${key}`))
  })
})

describe('maxQueue', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  test('with 10 gets waiting on a black hole, the 11th command rejects MC_QUEUE_FULL at once; the 10 reject MC_TIMEOUT', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address], { maxQueue: 10 })
    await client.get('queue:warm')
    proxy.blackhole()

    const settled: number[] = []
    const ten = Array.from({ length: 10 }, async (_, i) => {
      const outcome = await settle(async () => await client.get(`queue:${i}`))
      settled.push(i)
      return outcome
    })
    assertRejected(await settle(async () => { await client.set('queue:11', 'x') }), ['MC_QUEUE_FULL'], 'an 11th command (set)')
    assertRejected(await settle(async () => await client.get('queue:12')), ['MC_QUEUE_FULL'], 'a 12th command (get)')
    assertRejected(await settle(async () => await client.getMulti(['queue:13'])), ['MC_QUEUE_FULL'], 'a 13th command (getMulti)')
    assert.deepEqual(settled, [], 'refused while the first 10 were still waiting')
    for (const [i, outcome] of (await Promise.all(ten)).entries()) assertRejected(outcome, ['MC_TIMEOUT'], `queued get ${i}`)

    // They no longer count: a new command is not refused for a full queue.
    const next = await settle(async () => await client.get('queue:after'))
    assert.notEqual(next.ok ? undefined : asMemcachedError(next.error, 'a command after the queue drained').code, 'MC_QUEUE_FULL')
  })

  test('the same with mixed commands: 10 sets and incrs wait, the 11th rejects MC_QUEUE_FULL at once', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address], { maxQueue: 10 })
    await client.get('queue:warm')
    proxy.blackhole()

    const settled: number[] = []
    const ten = Array.from({ length: 10 }, async (_, i) => {
      const outcome = await settle(async (): Promise<unknown> => i % 2 === 0 ? await client.set(`queue:${i}`, 'v') : await client.incr(`queue:${i}`))
      settled.push(i)
      return outcome
    })
    assertRejected(await settle(async () => await client.get('queue:11')), ['MC_QUEUE_FULL'], 'an 11th command (get)')
    assertRejected(await settle(async () => await client.delete('queue:12')), ['MC_QUEUE_FULL'], 'a 12th command (delete)')
    assert.deepEqual(settled, [], 'refused while the first 10 were still waiting')
    // Sent in one tick, they share one deadline: all of them time out, none is failed by the reset that follows.
    for (const [i, outcome] of (await Promise.all(ten)).entries()) assertRejected(outcome, ['MC_TIMEOUT'], `queued command ${i}`)
  })
})

describe('close()', () => {
  const scope = new Scope()
  after(async () => { await scope.close() })

  function handles (): { sockets: number, timers: number } {
    const info = process.getActiveResourcesInfo()
    return {
      sockets: info.filter((name) => name === 'TCPSocketWrap').length,
      timers: info.filter((name) => name === 'Timeout').length
    }
  }

  test('commands in flight when close() is called resolve; later ones reject MC_CLOSED', TEST, async () => {
    const { proxy } = await scope.backend()
    const client = scope.client([proxy.address])
    await client.set('close:a', 'A')
    await client.set('close:n', '1')
    proxy.delay(50)

    const inFlight = Promise.all([
      settle(async () => await client.get('close:a')),
      settle(async () => await client.gets('close:a')),
      settle(async () => { await client.set('close:b', 'B') }),
      settle(async () => await client.incr('close:n')),
      settle(async () => await client.getMulti(['close:a', 'close:missing'])),
      settle(async () => await client.version())
    ])
    const closing = settle(async () => { await client.close() })
    const late = await Promise.all([
      settle(async () => await client.get('close:a')),
      settle(async () => { await client.set('close:c', 'C') }),
      settle(async () => await client.getMulti(['close:a'])),
      settle(async () => await client.stats()),
      settle(async () => { await client.flush() })
    ])
    for (const [i, outcome] of late.entries()) assertRejected(outcome, ['MC_CLOSED'], `command ${i} after close()`, MARGIN)

    const [get, gets, set, incr, multi, version] = await inFlight
    assert.equal(get.value?.toString(), 'A', 'get in flight')
    assert.equal(gets.value?.value.toString(), 'A', 'gets in flight')
    assert.ok(set.ok, 'set in flight')
    assert.equal(incr.value, 2n, 'incr in flight')
    assert.deepEqual([...(multi.value ?? new Map<string, Buffer>()).keys()], ['close:a'], 'getMulti in flight')
    assert.ok(version.ok, 'version in flight')
    const closed = await closing
    assert.ok(closed.ok, 'close() resolves')
    await bounded('a second close()', MARGIN, client.close())

    // The writes in flight really happened.
    proxy.pass()
    const reader = scope.client([proxy.address])
    assert.equal((await reader.get('close:b'))?.toString(), 'B')
  })

  test('close() does not wait on a server that stopped answering', TEST, async () => {
    const server = await scope.server()
    const busy = scope.client([server.address])
    const idle = scope.client([server.address])
    await Promise.all([busy.set('stopped:k', 'v'), idle.set('stopped:k', 'v')])
    await stopProcess(server)

    const inFlight = settle(async () => await busy.get('stopped:k'))
    const closingBusy = settle(async () => { await busy.close() })
    const closingIdle = settle(async () => { await idle.close() })
    const idleClosed = await bounded('close() of an idle client', TIMEOUT + MARGIN, closingIdle)
    assert.ok(idleClosed.ok)
    assertRejected(await bounded('the get in flight', TIMEOUT + MARGIN, inFlight), ['MC_TIMEOUT'], 'the get in flight')
    const busyClosed = await bounded('close() of a busy client', TIMEOUT + MARGIN, closingBusy)
    assert.ok(busyClosed.ok)
    await server.kill()
  })

  test('after close() no socket or timer of the client is left', TEST, async () => {
    const server = await scope.server()
    await sleep(20)
    const before = handles()
    const client = scope.client([server.address])
    await client.set('handles:k', 'v')
    assert.equal((await client.get('handles:k'))?.toString(), 'v')
    assert.ok(handles().sockets >= before.sockets + 1, 'the client socket is counted while open')
    await client.close()
    // One turn of the event loop, for the socket's close callback.
    await sleep(1)
    const afterClose = handles()
    assert.ok(afterClose.sockets <= before.sockets, `sockets: ${before.sockets} before, ${afterClose.sockets} after close()`)
    assert.ok(afterClose.timers <= before.timers, `timers: ${before.timers} before, ${afterClose.timers} after close()`)
  })

  test('close() resolves only once its socket is closed', TEST, async () => {
    // The handle goes away in the socket's close callback, a loop turn after
    // socket.destroy(). A close() that resolved at destroy() left anyone
    // checking for leaks right after `await client.close()` seeing the socket.
    const server = await scope.server()
    await sleep(20)
    const before = handles()
    const client = scope.client([server.address])
    await client.set('handles:k', 'v')
    await client.close()
    const afterClose = handles()
    assert.ok(afterClose.sockets <= before.sockets, `sockets: ${before.sockets} before, ${afterClose.sockets} right after close() resolved`)
  })

  async function runScript (script: string, env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> {
    const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    try {
      const [code] = await bounded(`the script (stdout ${JSON.stringify(stdout)})`, 5000, exited)
      return { code, stdout, stderr }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }

  // The compiled test runs from build/test/protocol; the package entry is build/src/index.js.
  const entry = path.join(__dirname, '..', '..', 'src', 'index.js')

  test('a script that connects, gets and closes exits by itself', TEST, async () => {
    const server = await scope.server()
    const script = `
      const { MemcachedClient } = require(process.env.ENTRY)
      const client = new MemcachedClient({ servers: [process.env.SERVER] })
      client.set('child', 'from the child')
        .then(() => client.get('child'))
        .then((value) => { console.log(String(value)); return client.close() })
        .then(() => console.log('closed'))`
    const { code, stdout, stderr } = await runScript(script, { ENTRY: entry, SERVER: server.address })
    assert.equal(code, 0, stderr)
    assert.equal(stdout, 'from the child\nclosed\n')
  })

  test('a script whose only server is down and ejected exits by itself, even without close()', TEST, async () => {
    const port = await freePort()
    const script = `
      const { MemcachedClient } = require(process.env.ENTRY)
      const client = new MemcachedClient({ servers: ['127.0.0.1:' + process.env.PORT], failures: 1, retryDelay: 60000 })
      client.get('child')
        .catch((error) => { console.log(error.code); return client.get('child') })
        .catch((error) => console.log(error.code))`
    const { code, stdout, stderr } = await runScript(script, { ENTRY: entry, PORT: String(port) })
    assert.equal(code, 0, stderr)
    assert.equal(stdout, 'MC_CONNECTION\nMC_NO_SERVERS\n')
  })
})

test('no unhandled rejection anywhere in this file', async () => {
  // A moment for rejections of the last tests to surface.
  await sleep(50)
  assert.deepEqual(unhandled.map((reason) => String(reason)), [])
})
