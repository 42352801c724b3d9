// A read-only request under `rolling` loads and renews its session in one
// round trip: `gets` and `touch` written in the same batch (never `gat`,
// which twemproxy does not serve), the TTL still cut short by absoluteTtl.
// Counted as store calls and as memcached commands (`stats`, and the client's
// command channel). Real memcached.
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { setImmediate as macrotask } from 'node:timers/promises'
import { MemcachedClient, MemcachedStore, MemoryStore, type CommandTrace, type MemcachedSessionOptions, type SessionStore } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { CountingStore, RenewingCountingStore, buildApp, cookieOf, idOf, keyOf } from './helpers.js'

let servers: MemcachedServer[]
let client: MemcachedClient

before(async () => {
  servers = await Promise.all([MemcachedServer.start(), MemcachedServer.start()])
  client = new MemcachedClient({ servers: servers.map((server) => server.address) })
})

after(async () => {
  await client.close()
  await Promise.all(servers.map(async (server) => { await server.stop() }))
})

/** Verbs of the memcached commands started while `work` runs, in order. */
async function commandsDuring (t: TestContext, work: () => Promise<void>): Promise<string[]> {
  return (await timelineDuring(t, work)).filter((event) => event.startsWith('start ')).map((event) => event.slice('start '.length))
}

/** `start <verb>` when a command is queued and `settle <verb>` when its reply came, in order, while `work` runs. */
async function timelineDuring (t: TestContext, work: () => Promise<void>): Promise<string[]> {
  const events: string[] = []
  const channel = diagnosticsChannel.tracingChannel<unknown, CommandTrace>('fastify-memcached-session:command')
  const handlers = {
    start: (trace: CommandTrace) => { events.push(`start ${trace.command}`) },
    end () {},
    asyncStart: (trace: CommandTrace) => { events.push(`settle ${trace.command}`) },
    asyncEnd () {},
    error () {}
  }
  channel.subscribe(handlers)
  t.after(() => { channel.unsubscribe(handlers) })
  await work()
  channel.unsubscribe(handlers)
  return events
}

const COUNTERS = ['cmd_get', 'cmd_set', 'cmd_touch'] as const

async function counters (): Promise<Record<string, number>> {
  await macrotask()
  const stats = await client.stats()
  return Object.fromEntries(COUNTERS.map((name) => [name, Object.values(stats).reduce((sum, server) => sum + Number(server[name] ?? 0), 0)]))
}

async function setup (t: TestContext, store: SessionStore, options: Partial<MemcachedSessionOptions> = {}): Promise<{ app: Awaited<ReturnType<typeof buildApp>>, cookie: string }> {
  const app = await buildApp({ store, ...options })
  t.after(() => app.close())
  app.get('/touch', async (request) => { request.session.touch(); return {} })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/count' }))
  return { app, cookie }
}

for (const kind of ['memcached', 'memory'] as const) {
  test(`a read-only request under rolling costs one store call, getAndTouch (${kind})`, async (t) => {
    const inner = kind === 'memcached' ? new MemcachedStore({ client }) : new MemoryStore()
    t.after(async () => { if (kind === 'memory') await inner.close() })
    const store = new RenewingCountingStore(inner)
    const { app, cookie } = await setup(t, store, { ttl: 1234 })
    store.reset()
    assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
    assert.equal(store.renewingLoads, 1)
    assert.deepEqual(store.calls, { get: 0, add: 0, cas: 0, touch: 0, delete: 0 })
    assert.deepEqual(store.ttls, [1234])
    // A write still costs one more call, and no touch.
    store.reset()
    await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
    assert.equal(store.renewingLoads, 1)
    assert.deepEqual(store.calls, { get: 0, add: 0, cas: 1, touch: 0, delete: 0 })
  })
}

test('a read-only request on memcached: one gets and one touch, sent together before either answer, no gat', async (t) => {
  const { app, cookie } = await setup(t, new MemcachedStore({ client }))
  const before = await counters()
  const timeline = await timelineDuring(t, async () => {
    assert.equal((await app.inject({ url: '/peek', cookies: { sid: cookie } })).statusCode, 200)
  })
  // Both queued before either reply came: one round trip, not a load and then a renewal.
  assert.deepEqual(timeline.slice(0, 2), ['start gets', 'start touch'])
  assert.deepEqual(timeline.slice(2).sort(), ['settle gets', 'settle touch'])
  const after = await counters()
  assert.deepEqual(COUNTERS.map((name) => (after[name] ?? 0) - (before[name] ?? 0)), [1, 0, 1])
})

test('near the end of absoluteTtl the renewal at load is cut short by the response\'s touch', async (t) => {
  const store = new RenewingCountingStore(new MemcachedStore({ client }))
  const { app, cookie } = await setup(t, store, { ttl: 1000, absoluteTtl: 5000 })
  store.reset()
  // The record says it was created 4,500 s ago: 500 s of life left.
  const key = keyOf(idOf(cookie))
  const record = (await client.get(key))?.toString() ?? ''
  await client.set(key, record.replace(/^\d+/, String(Math.floor(Date.now() / 1000) - 4500)), { ttl: 1000 })
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.equal(store.renewingLoads, 1)
  assert.equal(store.calls.touch, 1)
  assert.equal(store.ttls[0], 1000)
  assert.ok(store.ttls[1] !== undefined && store.ttls[1] <= 500 && store.ttls[1] >= 499, `touch ttl ${store.ttls[1]}`)
})

test('with absoluteTtl <= ttl a renewal could not move the expiry: a read-only request only loads, under rolling and touch() alike', async (t) => {
  const store = new RenewingCountingStore(new MemcachedStore({ client }))
  const { app, cookie } = await setup(t, store, { ttl: 86_400, absoluteTtl: 100 })
  const [written] = store.ttls
  assert.ok(written !== undefined && written <= 100 && written >= 99, `the write already set the end of the absolute lifetime: ttl ${written}`)
  for (const url of ['/peek', '/touch']) {
    store.reset()
    assert.equal((await app.inject({ url, cookies: { sid: cookie } })).statusCode, 200)
    assert.equal(store.renewingLoads, 0, url)
    assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 0, delete: 0 }, url)
  }
  // A write still sets the TTL that ends at the absolute lifetime.
  store.reset()
  await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 1, touch: 0, delete: 0 })
  assert.ok(store.ttls[0] !== undefined && store.ttls[0] <= 100, `cas ttl ${store.ttls[0]}`)
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 2, isNew: false })
})

test('a load that finds a session past absoluteTtl deletes it: replaying the dead cookie under rolling does not keep its data in memcached', async (t) => {
  const store = new RenewingCountingStore(new MemcachedStore({ client }))
  const { app, cookie } = await setup(t, store, { ttl: 1000, absoluteTtl: 5000 })
  // The record says it was created 5,001 s ago; memcached still holds it.
  const key = keyOf(idOf(cookie))
  const record = (await client.get(key))?.toString() ?? ''
  await client.set(key, record.replace(/^\d+/, String(Math.floor(Date.now() / 1000) - 5001)), { ttl: 1000 })
  store.reset()
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: null, isNew: true })
  assert.equal(store.renewingLoads, 1, 'the load renewed the record it then found dead')
  assert.equal(await client.get(key), undefined, 'so it is deleted, not kept alive by every replay')
  assert.deepEqual(store.calls, { get: 0, add: 0, cas: 0, touch: 0, delete: 1 })
})

test('a store without getAndTouch keeps working: get at load, touch at the end', async (t) => {
  const store = new CountingStore(new MemcachedStore({ client }))
  assert.equal((store as SessionStore).getAndTouch, undefined)
  const { app, cookie } = await setup(t, store)
  store.reset()
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 1, delete: 0 })
})

test('without rolling, a read-only request only loads (get); touch() renews at the end', async (t) => {
  const store = new RenewingCountingStore(new MemcachedStore({ client }))
  const { app, cookie } = await setup(t, store, { rolling: false })
  store.reset()
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual([store.renewingLoads, store.calls.get, store.calls.touch], [0, 1, 0])
  store.reset()
  await app.inject({ url: '/touch', cookies: { sid: cookie } })
  assert.deepEqual([store.renewingLoads, store.calls.get, store.calls.touch], [0, 1, 1])
})

test('replicas 2: loads and touches read each copy with gets and touch in one batch, never gat', async (t) => {
  const store = new MemcachedStore({ client, replicas: 2 })
  const { app, cookie } = await setup(t, store)
  const rolling = await commandsDuring(t, async () => { await app.inject({ url: '/peek', cookies: { sid: cookie } }) })
  assert.deepEqual(rolling.sort(), ['gets', 'gets', 'touch', 'touch'])
  const fixed = await buildApp({ store, rolling: false })
  t.after(() => fixed.close())
  fixed.get('/touch', async (request) => { request.session.touch(); return {} })
  const touched = await commandsDuring(t, async () => { await fixed.inject({ url: '/touch', cookies: { sid: cookie } }) })
  assert.deepEqual(touched.sort(), ['gets', 'gets', 'gets', 'gets', 'touch', 'touch'])
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: 1, isNew: false })
  await store.settle()
})

test('MemoryStore.getAndTouch returns the record and renews it; a missing key stays missing', async () => {
  const store = new MemoryStore()
  assert.equal(await store.add('k', 'v', 1), true)
  const found = await store.getAndTouch('k', 3600)
  assert.equal(found?.value, 'v')
  assert.equal((await store.cas('k', 'w', found?.version ?? 0n, 60)), 'stored', 'the version still guards a cas')
  assert.equal(await store.getAndTouch('missing', 60), undefined)
  await store.close()
})
