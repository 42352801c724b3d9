// The client against a real twemproxy (nutcracker) in front of three
// memcached, pooled as users do: hash md5, distribution ketama,
// auto_eject_hosts. twemproxy answers a multi-key get backend by backend (not
// in request order), closes the connection on what it does not serve (gat,
// flush_all, stats) and answers SERVER_ERROR for a dead backend.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MemcachedClient, type MemcachedClientOptions } from '../../src/protocol/client.js'
import { MemcachedError } from '../../src/protocol/errors.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
import { TwemproxyServer } from '../helpers/twemproxy.js'
import { waitFor } from '../helpers/wait.js'

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
after(() => { assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file') })

/**
 * Generous: these tests count outcomes, they never time anything, and CI has
 * 2 cores. A loopback connect whose SYN a busy listener dropped is retried by
 * the kernel after 1 s and again after 3 s, so 2 s was not enough under load.
 */
const OPTIONS: MemcachedClientOptions = { timeout: 5000, connectTimeout: 10_000 }
const TEST = { timeout: 60_000 }
/** How long a test waits for the proxy before failing: well inside {@link TEST}'s timeout. */
const WAIT_MS = 10_000

/** Three memcached, a twemproxy with md5 + ketama in front, and clients to close. */
class Pool {
  backends: MemcachedServer[] = []
  proxy!: TwemproxyServer
  private readonly clients: MemcachedClient[] = []
  private readonly others: Array<{ stop: () => Promise<void> } | { close: () => Promise<void> }> = []

  async start (options: { serverFailureLimit?: number } = {}): Promise<void> {
    this.backends = await Promise.all([MemcachedServer.start(), MemcachedServer.start(), MemcachedServer.start()])
    this.proxy = await TwemproxyServer.start({ backends: this.backends.map((backend) => backend.address), ...options })
  }

  client (options: MemcachedClientOptions = {}, servers = [this.proxy.address]): MemcachedClient {
    const client = new MemcachedClient({ ...OPTIONS, ...options, servers })
    this.clients.push(client)
    return client
  }

  /** A client straight to the backends: ketama over the same three servers. */
  direct (): MemcachedClient {
    return this.client({}, this.backends.map((backend) => backend.address))
  }

  own<T extends { stop: () => Promise<void> } | { close: () => Promise<void> }> (thing: T): T {
    this.others.push(thing)
    return thing
  }

  async close (): Promise<void> {
    await Promise.all(this.clients.map(async (client) => { await client.close() }))
    for (const thing of this.others) await ('stop' in thing ? thing.stop() : thing.close())
    await this.proxy?.stop()
    await Promise.all(this.backends.map(async (backend) => { await backend.kill() }))
  }
}

/** Every 5th key (i % 5 === 4) is never written: a miss. */
const isMiss = (i: number): boolean => i % 5 === 4

async function writeKeys (client: MemcachedClient, prefix: string, count: number): Promise<void> {
  const writes: Array<Promise<void>> = []
  for (let i = 0; i < count; i++) if (!isMiss(i)) writes.push(client.set(`${prefix}${i}`, `value of ${i}`))
  await Promise.all(writes)
}

function codeOf (error: unknown): string {
  return error instanceof MemcachedError ? error.code : String(error)
}

describe('through twemproxy (md5, ketama, auto_eject_hosts)', () => {
  const pool = new Pool()
  before(async () => { await pool.start() })
  after(async () => { await pool.close() })

  for (const proxy of [false, true]) {
    test(`5,000 concurrent get/gets with every 5th key missing: 0 rejected, every value right (proxy: ${String(proxy)})`, TEST, async (t) => {
      const client = pool.client({ proxy })
      const prefix = `conc:${String(proxy)}:`
      await writeKeys(client, prefix, 5000)
      // 2,500 gets, then 2,500 gets (the command): coalesced into batches of
      // up to 256 keys, each spanning the three backends.
      const outcomes = await Promise.allSettled(Array.from({ length: 5000 }, async (_, i) =>
        i < 2500 ? (await client.get(`${prefix}${i}`))?.toString() : (await client.gets(`${prefix}${i}`))?.value.toString()))
      const rejected = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => codeOf(outcome.reason))
      t.diagnostic(`${rejected.length} of 5000 rejected`)
      assert.deepEqual(rejected, [], `${rejected.length} of 5000 rejected`)
      for (const [i, outcome] of outcomes.entries()) {
        assert.equal((outcome as PromiseFulfilledResult<string | undefined>).value, isMiss(i) ? undefined : `value of ${i}`, `key ${i}`)
      }
    })
  }

  test('getMulti of 5,000 keys with a miss every 5th: the 4,000 hits, nothing else', TEST, async (t) => {
    const client = pool.client()
    await writeKeys(client, 'multi:', 5000)
    const keys = Array.from({ length: 5000 }, (_, i) => `multi:${i}`)
    const found = await client.getMulti(keys)
    t.diagnostic(`${found.size} of 5000 found (4000 written)`)
    assert.equal(found.size, 4000)
    for (let i = 0; i < 5000; i++) assert.equal(found.get(`multi:${i}`)?.toString(), isMiss(i) ? undefined : `value of ${i}`, `key ${i}`)
  })

  test('placement equals direct ketama with md5: 10,000 of 10,000 keys written directly are found through the proxy', TEST, async (t) => {
    const direct = pool.direct()
    const keys = Array.from({ length: 10_000 }, (_, i) => `place:${i}`)
    await Promise.all(keys.map(async (key) => { await direct.set(key, key) }))
    const found = await pool.client().getMulti(keys)
    t.diagnostic(`md5: ${found.size} of 10000 found through the proxy`)
    assert.equal(found.size, 10_000)
  })

  test('with twemproxy\'s default fnv1a_64 a large share of those keys is lost', TEST, async (t) => {
    const direct = pool.direct()
    const keys = Array.from({ length: 10_000 }, (_, i) => `fnv:${i}`)
    await Promise.all(keys.map(async (key) => { await direct.set(key, key) }))
    const fnv = pool.own(await TwemproxyServer.start({ backends: pool.backends.map((backend) => backend.address), hash: 'fnv1a_64' }))
    const found = await pool.client({}, [fnv.address]).getMulti(keys)
    t.diagnostic(`fnv1a_64: ${found.size} of 10000 found through the proxy (${(found.size / 100).toFixed(1)}%)`)
    // Another hash places about 1 key in 3 on the server direct ketama chose.
    assert.ok(found.size < 5000, `${found.size} of 10000 found`)
  })

  test('every method through the proxy: each works, and with proxy: true flush, stats and gat reject MC_UNSUPPORTED unsent', TEST, async () => {
    for (const proxy of [false, true]) {
      const client = pool.client({ proxy })
      const p = `all:${String(proxy)}:`
      const what = `proxy: ${String(proxy)}`
      await client.set(`${p}a`, 'A', { ttl: 60 })
      assert.equal((await client.get(`${p}a`))?.toString(), 'A', what)
      const item = await client.gets(`${p}a`)
      assert.equal(item?.value.toString(), 'A', what)
      assert.equal(await client.cas(`${p}a`, 'A2', item?.cas ?? 0n), 'stored', what)
      assert.equal(await client.cas(`${p}a`, 'A3', item?.cas ?? 0n), 'exists', what)
      assert.equal(await client.add(`${p}a`, 'x'), false, what)
      assert.equal(await client.add(`${p}b`, 'B'), true, what)
      assert.equal(await client.replace(`${p}b`, 'B2'), true, what)
      assert.equal(await client.replace(`${p}none`, 'x'), false, what)
      assert.equal(await client.append(`${p}b`, '>'), true, what)
      assert.equal(await client.prepend(`${p}b`, '<'), true, what)
      assert.deepEqual(Object.fromEntries([...await client.getMulti([`${p}a`, `${p}b`, `${p}none`])].map(([k, v]) => [k, v.toString()])),
        { [`${p}a`]: 'A2', [`${p}b`]: '<B2>' }, what)
      await client.set(`${p}n`, '10')
      assert.equal(await client.incr(`${p}n`, 5), 15n, what)
      assert.equal(await client.decr(`${p}n`), 14n, what)
      assert.equal(await client.touch(`${p}n`, 60), true, what)
      assert.equal(await client.touch(`${p}none`, 60), false, what)
      assert.equal(await client.delete(`${p}n`), true, what)
      assert.equal(await client.delete(`${p}n`), false, what)
      // One answer per proxy, keyed by the proxy's address (twemproxy passes a backend's version on).
      assert.deepEqual(Object.keys(await client.version()), [pool.proxy.address], what)
      const health = await client.ping()
      assert.deepEqual(Object.keys(health), [pool.proxy.address], what)
      assert.equal(health[pool.proxy.address]?.ok, true, what)
      if (proxy) {
        await assert.rejects(client.gat(`${p}a`, 60), { code: 'MC_UNSUPPORTED' })
        await assert.rejects(client.flush(), { code: 'MC_UNSUPPORTED' })
        await assert.rejects(client.stats(), { code: 'MC_UNSUPPORTED' })
        assert.equal((await client.get(`${p}a`))?.toString(), 'A2', 'the connection is untouched')
      }
    }
  })

  test('with proxy: true, not one byte of gat, flush or stats is written, and 200 gets sent in the same tick all succeed', TEST, async () => {
    // A pass-through proxy in front of twemproxy counts the bytes the client writes.
    const counter = pool.own(await FaultProxy.start({ host: pool.proxy.host, port: pool.proxy.port }))
    const client = pool.client({ proxy: true }, [counter.address])
    await writeKeys(client, 'tick:', 200)
    const written = counter.bytesFromClient
    const unsupported = await Promise.allSettled([client.gat('tick:0', 60), client.flush(), client.stats()])
    assert.deepEqual(unsupported.map((outcome) => outcome.status === 'rejected' ? codeOf(outcome.reason) : 'resolved'), ['MC_UNSUPPORTED', 'MC_UNSUPPORTED', 'MC_UNSUPPORTED'])
    assert.equal(counter.bytesFromClient, written, 'nothing written')

    const gets = Array.from({ length: 200 }, async (_, i) => (await client.get(`tick:${i}`))?.toString())
    const gat = client.gat('tick:1', 60)
    assert.deepEqual(await Promise.allSettled([gat]).then(([outcome]) => codeOf((outcome as PromiseRejectedResult).reason)), 'MC_UNSUPPORTED')
    const values = await Promise.all(gets)
    for (const [i, value] of values.entries()) assert.equal(value, isMiss(i) ? undefined : `value of ${i}`, `get ${i}`)
    assert.equal(counter.connections, 1, 'one connection all along: twemproxy never closed it')
  })
})

describe('bad input from a proxy (proxy: true)', () => {
  const pool = new Pool()
  before(async () => { await pool.start() })
  after(async () => { await pool.close() })

  // `before` acts before the commands are sent, `during` while they are in flight.
  // A reset sends the reads in flight again once (a proxy drops pipelined
  // requests with a reset too), so only a second reset fails them.
  const faults: Array<{ name: string, before: (proxy: FaultProxy) => void, during: (proxy: FaultProxy) => Promise<void>, codes: string[] }> = [
    { name: 'garbage', before: (proxy) => { proxy.garbage(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')) }, during: async () => {}, codes: ['MC_PROTOCOL'] },
    { name: 'a connection reset twice', before: (proxy) => { proxy.blackhole() }, during: resetTwice, codes: ['MC_CONNECTION'] },
    { name: 'a proxy that never answers', before: (proxy) => { proxy.blackhole() }, during: async () => {}, codes: ['MC_TIMEOUT', 'MC_CONNECTION'] }
  ]
  for (const fault of faults) {
    test(`${fault.name}: the commands in flight reject ${fault.codes.join(' or ')}, none hangs, and the client works again once it passes`, TEST, async () => {
      const front = pool.own(await FaultProxy.start({ host: pool.proxy.host, port: pool.proxy.port }))
      const client = pool.client({ proxy: true, timeout: 500, retryDelay: 200 }, [front.address])
      await writeKeys(client, 'bad:', 50)
      fault.before(front)
      const inFlight = Promise.allSettled([
        ...Array.from({ length: 50 }, async (_, i) => await client.get(`bad:${i}`)),
        ...Array.from({ length: 10 }, async (_, i) => { await client.set(`bad:w${i}`, 'w') }),
        client.getMulti(['bad:0', 'bad:1'])
      ])
      await new Promise((resolve) => setTimeout(resolve, 20))
      await fault.during(front)
      const outcomes = await inFlight
      const codes = new Set(outcomes.map((outcome) => outcome.status === 'rejected' ? codeOf(outcome.reason) : 'resolved'))
      assert.deepEqual([...codes].filter((code) => !fault.codes.includes(code)), [], `every command in flight rejected ${fault.codes.join(' or ')}`)
      front.pass()
      let value: Buffer | undefined
      for (let attempt = 0; value === undefined && attempt < 200; attempt++) {
        value = await client.get('bad:0').catch(async () => { await new Promise((resolve) => setTimeout(resolve, 20)); return undefined })
      }
      assert.equal(value?.toString(), 'value of 0', 'works again')
    })
  }
})

describe('a proxy that resets the connection (proxy: true)', () => {
  const pool = new Pool()
  before(async () => { await pool.start() })
  after(async () => { await pool.close() })

  // twemproxy closes with pipelined requests unread after a multi-key get's
  // SERVER_ERROR: the kernel resets, and the reset can beat the reply.
  test('reads in flight go again once on a new connection and succeed; writes in flight reject MC_CONNECTION; the proxy is not counted as failing', TEST, async () => {
    const front = pool.own(await FaultProxy.start({ host: pool.proxy.host, port: pool.proxy.port }))
    const client = pool.client({ proxy: true, failures: 1 }, [front.address])
    await writeKeys(client, 'reset:', 50)
    const written = front.bytesFromClient
    front.blackhole()
    const reads = Promise.allSettled(Array.from({ length: 50 }, async (_, i) => (await client.get(`reset:${i}`))?.toString()))
    const multi = Promise.allSettled([client.getMulti(['reset:0', 'reset:1'])])
    const writes = Promise.allSettled(Array.from({ length: 10 }, async (_, i) => { await client.set(`reset:w${i}`, 'w') }))
    await waitFor('the gets reach the proxy', WAIT_MS, () => front.bytesFromClient > written)
    const connections = front.connections
    front.pass()
    front.resetAll()
    const values = (await reads).map((outcome) => outcome.status === 'fulfilled' ? outcome.value : codeOf(outcome.reason))
    assert.deepEqual(values, Array.from({ length: 50 }, (_, i) => isMiss(i) ? undefined : `value of ${i}`))
    const [multiOutcome] = await multi
    assert.equal(multiOutcome?.status, 'fulfilled', 'the getMulti went again too')
    assert.deepEqual([...new Set((await writes).map((outcome) => outcome.status === 'rejected' ? codeOf(outcome.reason) : 'resolved'))], ['MC_CONNECTION'], 'writes are never replayed')
    assert.equal(front.connections, connections + 1, 'one new connection')
    assert.deepEqual(client.liveServers, [front.address], 'a reset with reads in flight is no failure (failures: 1)')
  })

  test('a second reset fails the reads that went again (never a third try) and counts as a failure', TEST, async () => {
    const front = pool.own(await FaultProxy.start({ host: pool.proxy.host, port: pool.proxy.port }))
    const client = pool.client({ proxy: true, failures: 1, retryDelay: 60_000 }, [front.address])
    await writeKeys(client, 'reset2:', 10)
    const written = front.bytesFromClient
    front.blackhole()
    const reads = Promise.allSettled(Array.from({ length: 10 }, async (_, i) => await client.get(`reset2:${i}`)))
    await waitFor('the gets reach the proxy', WAIT_MS, () => front.bytesFromClient > written)
    await resetTwice(front)
    const codes = new Set((await reads).map((outcome) => outcome.status === 'rejected' ? codeOf(outcome.reason) : 'resolved'))
    assert.deepEqual([...codes], ['MC_CONNECTION'])
    assert.deepEqual(client.liveServers, [], 'ejected after the second reset (failures: 1)')
  })
})

/** Resets the proxy's connections, waits for the client's next one to carry bytes, and resets again. */
async function resetTwice (proxy: FaultProxy): Promise<void> {
  const connections = proxy.connections
  const bytes = proxy.bytesFromClient
  proxy.resetAll()
  await waitFor('the client reconnects and writes', WAIT_MS, () => proxy.connections > connections && proxy.bytesFromClient > bytes)
  proxy.resetAll()
}

describe('through twemproxy with a dead backend', () => {
  // A high failure limit keeps the dead backend in twemproxy's ring, so its
  // keys keep getting SERVER_ERROR instead of moving to the other two.
  const pool = new Pool()
  before(async () => { await pool.start({ serverFailureLimit: 1_000_000 }) })
  after(async () => { await pool.close() })

  // twemproxy closes the connection right after the SERVER_ERROR of a
  // multi-key get: with proxy: true the reads pipelined behind it go again.
  test('SERVER_ERROR fails only the dead backend\'s keys, coalesced or not, and never ejects the proxy (proxy: true)', TEST, async (t) => {
      const direct = pool.direct()
      const client = pool.client({ proxy: true, failures: 1 })
      const prefix = 'dead:'
      const keys = Array.from({ length: 600 }, (_, i) => `${prefix}${i}`)
      await Promise.all(keys.map(async (key) => { await direct.set(key, key) }))
      const victim = pool.backends[0] as MemcachedServer
      const onVictim = new Set(keys.filter((key) => direct.serversFor(key, 1)[0] === victim.address))
      await victim.kill()
      try {
        // 600 gets in one tick: coalesced into batches that each span all three backends.
        const outcomes = await Promise.allSettled(keys.map(async (key) => (await client.get(key))?.toString()))
        const wrong: string[] = []
        for (const [i, outcome] of outcomes.entries()) {
          const key = keys[i] as string
          if (onVictim.has(key)) {
            if (outcome.status !== 'rejected' || codeOf(outcome.reason) !== 'MC_SERVER_ERROR') wrong.push(`${key} (dead backend): ${outcome.status}`)
          } else if (outcome.status !== 'fulfilled' || outcome.value !== key) {
            wrong.push(`${key}: ${outcome.status === 'rejected' ? codeOf(outcome.reason) : String(outcome.value)}`)
          }
        }
        t.diagnostic(`${onVictim.size} of 600 keys on the dead backend; ${outcomes.filter((outcome) => outcome.status === 'rejected').length} rejected`)
        assert.deepEqual(wrong, [], `${wrong.length} wrong outcomes`)
        // A single-key command to the dead backend: SERVER_ERROR, that command only.
        const deadKey = [...onVictim][0] as string
        await assert.rejects(client.set(deadKey, 'x'), { code: 'MC_SERVER_ERROR' })
        await assert.rejects(client.incr(deadKey), { code: 'MC_SERVER_ERROR' })
        assert.deepEqual(client.liveServers, [pool.proxy.address], 'the proxy answered: it stays on the ring (failures: 1)')
        const live = keys.find((key) => !onVictim.has(key)) as string
        assert.equal((await client.get(live))?.toString(), live)
      } finally {
        await victim.restart()
      }
    })
})
