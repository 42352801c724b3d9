// Many concurrent requests of one session: at most one save per session in
// flight per process, the others queued and merged onto it, so memcached
// sees a handful of commands per request however many arrive at once.
// Counted with memcached's own `stats`, read through the app's own client
// after a macrotask: its one connection answers in order, so every command
// the requests sent (awaited or not) is counted before the stats reply.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { setImmediate as macrotask } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient, MemcachedStore, type SessionStore } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { CountingStore, buildApp, cookieOf, idOf, keyOf } from './helpers.js'

let server: MemcachedServer
let client: MemcachedClient
let app: FastifyInstance

before(async () => {
  server = await MemcachedServer.start()
  client = new MemcachedClient({ servers: [server.address] })
  app = await buildApp({ client })
  app.post<{ Params: { name: `k${number}` } }>('/set/:name', async (request) => {
    request.session.set(request.params.name, 1)
    return { ok: true }
  })
})

after(async () => {
  await app.close()
  await client.close()
  await server.stop()
})

const COUNTERS = ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_hits', 'delete_misses', 'cas_hits', 'cas_badval', 'cas_misses'] as const
type Counters = Record<typeof COUNTERS[number], number>

/** memcached's command counters once everything sent so far has been answered. */
async function settledCounters (): Promise<Counters> {
  await macrotask()
  const stats = (await client.stats())[server.address] ?? {}
  return Object.fromEntries(COUNTERS.map((name) => [name, Number(stats[name] ?? 0)])) as Counters
}

function delta (before: Counters, after: Counters): Counters {
  return Object.fromEntries(COUNTERS.map((name) => [name, after[name] - before[name]])) as Counters
}

/** Commands sent: gets, stores (cas included), touches and deletes. */
function commands (counters: Counters): number {
  return counters.cmd_get + counters.cmd_set + counters.cmd_touch + counters.delete_hits + counters.delete_misses
}

async function concurrentWrites (requests: number): Promise<{ statuses: Map<number, number>, counters: Counters, kept: number }> {
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  const before = await settledCounters()
  const responses = await Promise.all(Array.from({ length: requests }, async (_, i) =>
    await app.inject({ method: 'POST', url: `/set/k${i}`, cookies: { sid: cookie } })))
  const counters = delta(before, await settledCounters())
  const statuses = new Map<number, number>()
  for (const response of responses) statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
  const stored = await client.get(keyOf(idOf(cookie)))
  const data = JSON.parse(stored?.toString().replace(/^\d+:\d*:/, '') ?? '{}') as Record<string, number>
  const kept = Array.from({ length: requests }, (_, i) => `k${i}`).filter((name) => data[name] === 1).length
  return { statuses, counters, kept }
}

test('50 concurrent writes to one session: every change kept, no 503, at most 4 memcached commands per request', async (t) => {
  const { statuses, counters, kept } = await concurrentWrites(50)
  t.diagnostic(`50 concurrent: ${JSON.stringify(counters)}, ${(commands(counters) / 50).toFixed(2)} commands per request`)
  assert.deepEqual([...statuses], [[200, 50]])
  assert.equal(kept, 50)
  assert.ok(commands(counters) <= 4 * 50, `${commands(counters)} commands for 50 requests`)
})

test('200 concurrent writes to one session: every change kept, no 503', async (t) => {
  const { statuses, counters, kept } = await concurrentWrites(200)
  t.diagnostic(`200 concurrent: ${JSON.stringify(counters)}, ${(commands(counters) / 200).toFixed(2)} commands per request`)
  assert.deepEqual([...statuses], [[200, 200]])
  assert.equal(kept, 200)
  assert.ok(commands(counters) <= 4 * 200, `${commands(counters)} commands for 200 requests`)
})

test('two app instances (two clients) writing one session at once: every change kept, no 503', async (t) => {
  const otherClient = new MemcachedClient({ servers: [server.address] })
  t.after(() => otherClient.close())
  const other = await buildApp({ client: otherClient })
  t.after(() => other.close())
  other.post<{ Params: { name: `k${number}` } }>('/set/:name', async (request) => {
    request.session.set(request.params.name, 1)
    return { ok: true }
  })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  const responses = await Promise.all(Array.from({ length: 100 }, async (_, i) =>
    await (i % 2 === 0 ? app : other).inject({ method: 'POST', url: `/set/k${i}`, cookies: { sid: cookie } })))
  assert.deepEqual([...new Set(responses.map((response) => response.statusCode))], [200])
  const data = JSON.parse((await client.get(keyOf(idOf(cookie))))?.toString().replace(/^\d+:\d*:/, '') ?? '{}') as Record<string, number>
  assert.equal(Array.from({ length: 100 }, (_, i) => `k${i}`).filter((name) => data[name] === 1).length, 100)
})

test('a save too large for the store fails alone: the small save that waited in the same batch is kept', async (t) => {
  const inner = new CountingStore(new MemcachedStore({ client }))
  let held: Promise<void> | undefined
  const store: SessionStore = {
    get: async (key) => await inner.get(key),
    add: async (key, value, ttl) => await inner.add(key, value, ttl),
    cas: async (key, value, version, ttl) => {
      const wait = held
      held = undefined
      if (wait !== undefined) await wait
      return await inner.cas(key, value, version, ttl)
    },
    touch: async (key, ttl) => await inner.touch(key, ttl),
    delete: async (key) => await inner.delete(key)
  }
  const own = await buildApp({ store })
  t.after(() => own.close())
  // Larger than memcached's 1 MiB item, and a small change.
  own.post('/cart', async (request) => { request.session.set('cart', ['x'.repeat(1_100_000)]); return {} })
  own.post('/user', async (request) => { request.session.set('userId', 'bob'); return {} })
  let handled = 0
  const bothHandled = gate()
  own.addHook('preSerialization', async (request, _reply, payload) => {
    if (request.url !== '/count' && ++handled === 2) bothHandled.open()
    return payload
  })
  const cookie = cookieOf(await own.inject({ method: 'POST', url: '/count' }))
  inner.reset()
  const release = gate()
  held = release.wait
  const first = own.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  const cart = own.inject({ method: 'POST', url: '/cart', cookies: { sid: cookie } })
  const user = own.inject({ method: 'POST', url: '/user', cookies: { sid: cookie } })
  await bothHandled.wait
  // Their onSend runs right after: both queue behind the held write.
  await macrotask()
  release.open()
  const responses = await Promise.all([first, cart, user])
  assert.deepEqual(responses.map((response) => response.statusCode), [200, 500, 200])
  assert.equal(responses[1]?.json<{ code: string }>().code, 'SESSION_TOO_LARGE')
  // The held cas; the batch's re-read and its cas, refused as too large; then each alone: re-read, cas.
  assert.deepEqual([inner.calls.get, inner.calls.cas], [3 + 3, 4])
  assert.deepEqual((await own.inject({ url: '/whoami', cookies: { sid: cookie } })).json(), { userId: 'bob' })
  assert.ok(((await client.get(keyOf(idOf(cookie))))?.length ?? 0) < 1000, 'the large cart was never stored')
})

/** A promise the test opens by hand. */
function gate (): { wait: Promise<void>, open: () => void } {
  let open = (): void => {}
  const wait = new Promise<void>((resolve) => { open = resolve })
  return { wait, open }
}
