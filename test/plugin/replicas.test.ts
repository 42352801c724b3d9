// Replicated sessions (replicas >= 2) against three real memcached processes:
// where the copies go, repair on read, the version token, conflicts and
// merges, no resurrection, a server back empty, a hanging replica, and 1,000
// sessions surviving kill -9 of each server in turn.
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { MemcachedClient, MemcachedStore, type MemcachedSessionOptions } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { FaultProxy } from '../helpers/proxy.js'
import { buildApp, cookieOf, idOf, keyOf, sleep } from './helpers.js'

const STAMPED = /^@[1-9]\d*\.[0-9a-f]{16}\.\d+@/
const TIMEOUT = 400
const RETRY_DELAY = 200
// MemcachedStore skips a replica this long (ms) after it failed; a server
// back from a restart gets its copies restored once that has passed.
const SUSPECT_MS = 1000

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => { unhandled.push(reason) })

let servers: MemcachedServer[]
let observer: MemcachedClient

before(async () => {
  servers = await Promise.all([MemcachedServer.start(), MemcachedServer.start(), MemcachedServer.start()])
  observer = new MemcachedClient({ servers: servers.map((server) => server.address) })
})

after(async () => {
  await observer.close()
  await Promise.all(servers.map(async (server) => await server.stop()))
  assert.deepEqual(unhandled, [], 'no unhandled rejection in the whole file')
})

function fastClient (addresses: string[]): MemcachedClient {
  return new MemcachedClient({ servers: addresses, timeout: TIMEOUT, connectTimeout: TIMEOUT, retryDelay: RETRY_DELAY })
}

async function setup (t: TestContext, options: Partial<MemcachedSessionOptions> = {}, addresses = servers.map((server) => server.address)): Promise<{ app: FastifyInstance, store: MemcachedStore, client: MemcachedClient }> {
  const client = fastClient(addresses)
  const app = await buildApp({ client, replicas: 2, ...options })
  app.post<{ Params: { n: string } }>('/mine/:n', async (request) => {
    request.session.set('userId', `user-${request.params.n}`)
    return { ok: true }
  })
  t.after(async () => {
    await app.close()
    await store.settle()
    await client.close()
  })
  const store = app.sessionStore as MemcachedStore
  return { app, store, client }
}

/** The raw value of `key` on each server, by address (undefined where missing). */
async function copies (key: string): Promise<Record<string, string | undefined>> {
  const entries = await Promise.all(servers.map(async (server) =>
    [server.address, (await observer.forServer(server.address).get(key))?.toString()] as const))
  return Object.fromEntries(entries)
}

async function whoami (app: FastifyInstance, cookie: string): Promise<{ status: number, userId: string | null }> {
  const response = await app.inject({ url: '/whoami', cookies: { sid: cookie } })
  return { status: response.statusCode, userId: response.statusCode === 200 ? response.json<{ userId: string | null }>().userId : null }
}

async function eventually (ms: number, attempt: () => Promise<boolean> | boolean): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await attempt()) return true
    await sleep(25)
  }
  return false
}

test('options: replicas must be a positive integer, at most the number of servers', async () => {
  for (const replicas of [0, -1, 1.5, Number.NaN, '2']) {
    await assert.rejects(buildApp({ servers: [servers[0]?.address ?? ''], replicas: replicas as number }), /^TypeError: fastify-memcached-session: replicas must be a positive integer/)
  }
  await assert.rejects(buildApp({ servers: [servers[0]?.address ?? ''], replicas: 2 }), /replicas \(2\) cannot exceed the number of servers \(1\)/)
  assert.throws(() => new MemcachedStore({ client: observer, replicas: 4 }), /cannot exceed the number of servers \(3\)/)
})

test('a session is written to exactly `replicas` servers, the next ones along the ring, stamped and never under its id', async (t) => {
  const { app, client } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/1' }))
  const key = keyOf(idOf(cookie))
  const held = await copies(key)
  const holders = Object.keys(held).filter((address) => held[address] !== undefined).sort()
  assert.deepEqual(holders, client.serversFor(key, 2).sort())
  const values = holders.map((address) => held[address] as string)
  assert.match(values[0] ?? '', STAMPED)
  assert.equal(values[0], values[1], 'both copies carry the same stamp')
  assert.match(values[0] ?? '', /:\{"userId":"user-1"\}$/)
  assert.ok(!(values[0] ?? '').includes(idOf(cookie)))
  assert.deepEqual(await whoami(app, cookie), { status: 200, userId: 'user-1' })
})

test('a replica that misses while another hits: the hit is returned and the missing copy restored with add, in the background', async (t) => {
  const { app, store, client } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/2' }))
  const key = keyOf(idOf(cookie))
  const [primary, secondary] = client.serversFor(key, 2) as [string, string]
  const original = (await copies(key))[secondary]
  for (const lost of [primary, secondary]) {
    await observer.forServer(lost).delete(key)
    const before = store.counters.repaired
    assert.deepEqual(await whoami(app, cookie), { status: 200, userId: 'user-2' })
    await store.settle()
    assert.equal(store.counters.repaired, before + 1)
    assert.equal((await copies(key))[lost], original, `${lost} holds the same copy again`)
  }
})

test('repair never overwrites: a replica holding an older copy keeps it until the next save moves it forward', async (t) => {
  const { app, store, client } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/3' }))
  const key = keyOf(idOf(cookie))
  const [primary, secondary] = client.serversFor(key, 2) as [string, string]
  const old = (await copies(key))[secondary] as string
  // The secondary misses one save (as if it had been unreachable for it).
  const view = observer.forServer(secondary)
  await app.inject({ method: 'POST', url: '/mine/4', cookies: { sid: cookie } })
  await view.set(key, old, { ttl: 60 })
  assert.deepEqual(await whoami(app, cookie), { status: 200, userId: 'user-4' }, 'the freshest copy wins')
  await store.settle()
  assert.equal((await copies(key))[secondary], old, 'the older copy was not overwritten by a load')
  await app.inject({ method: 'POST', url: '/mine/5', cookies: { sid: cookie } })
  const now = await copies(key)
  assert.equal(now[primary], now[secondary])
  assert.match(now[secondary] ?? '', /"user-5"/)
})

test('the version token carries each replica\'s CAS: a write on either replica since the load is a conflict', async (t) => {
  const { client } = await setup(t)
  const store = new MemcachedStore({ client, replicas: 2 })
  const key = `replica-cas:${process.pid}`
  assert.equal(await store.add(key, 'v1', 60), true)
  assert.equal(await store.add(key, 'v1 again', 60), false, 'add never overwrites')
  const first = await store.get(key)
  assert.equal(first?.value, 'v1')
  assert.ok(first !== undefined && first.version > 1n << 128n, 'the token holds more than one CAS unique')
  for (const server of client.serversFor(key, 2)) {
    const view = observer.forServer(server)
    // The same copy rewritten (a new CAS unique, the same stamp) is no conflict.
    const loaded = await store.get(key)
    assert.ok(loaded !== undefined)
    await view.set(key, (await view.get(key))?.toString() ?? '', { ttl: 60 })
    assert.equal(await store.cas(key, 'same', loaded.version, 60), 'stored')
    // Another writer's save reached only this replica: a conflict, whichever replica it is.
    const again = await store.get(key)
    assert.ok(again !== undefined)
    const raw = (await view.get(key))?.toString() ?? ''
    await view.set(key, raw.replace(/^@(\d+)\./, (_, gen: string) => `@${Number(gen) + 1}.`), { ttl: 60 })
    assert.equal(await store.cas(key, 'mine', again.version, 60), 'exists', `a newer copy on ${server}`)
    const next = await store.get(key)
    assert.ok(next !== undefined)
    assert.equal(await store.cas(key, 'v-next', next.version, 60), 'stored')
    assert.equal(await store.cas(key, 'stale', next.version, 60), 'exists', 'an old token is refused')
    const [a, b] = await Promise.all(client.serversFor(key, 2).map(async (holder) => (await observer.forServer(holder).get(key))?.toString()))
    assert.equal(a, b, 'both copies identical after the save')
  }
  // With the CAS uniques of the load in the token, a save is one cas per replica and no re-read.
  const loaded = await store.get(key)
  assert.ok(loaded !== undefined)
  const before = await observer.stats()
  assert.equal(await store.cas(key, 'fast', loaded.version, 60), 'stored')
  const after = await observer.stats()
  for (const server of client.serversFor(key, 2)) {
    const delta = (name: string): number => Number(after[server]?.[name]) - Number(before[server]?.[name])
    assert.deepEqual({ gets: delta('cmd_get'), cas: delta('cas_hits') }, { gets: 0, cas: 1 }, server)
  }
  const last = await store.get(key)
  assert.equal(last?.value, 'fast')
  assert.equal(await store.delete(key), true)
  assert.equal(await store.get(key), undefined)
  assert.equal(await store.cas(key, 'zombie', last?.version ?? 0n, 60), 'not_found', 'a destroyed record stays destroyed')
  assert.equal(await store.touch(key, 60), false)
  assert.equal(await store.delete(key), false)
  await store.settle()
})

test('20 concurrent requests changing different keys of one replicated session all keep their change; both copies end identical', async (t) => {
  const { app, client } = await setup(t)
  app.post<{ Params: { name: `k${number}` } }>('/set/:name', async (request) => {
    await sleep(Math.floor(Math.random() * 5))
    request.session.set(request.params.name, 1)
    return { ok: true }
  })
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/6' }))
  const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
    await app.inject({ method: 'POST', url: `/set/k${i}`, cookies: { sid: cookie } })))
  assert.deepEqual(responses.map((response) => response.statusCode), Array(20).fill(200))
  const key = keyOf(idOf(cookie))
  const held = await copies(key)
  const [primary, secondary] = client.serversFor(key, 2) as [string, string]
  assert.equal(held[primary], held[secondary])
  const data = JSON.parse((held[primary] ?? '').replace(/^@[^@]*@\d+:\d*:/, '')) as Record<string, unknown>
  for (let i = 0; i < 20; i++) assert.equal(data[`k${i}`], 1, `k${i} kept`)
})

test('logout leaves tombstones: a copy that missed the destroy cannot bring the session back, and a late save is dropped', async (t) => {
  const { app, store, client } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/7' }))
  const key = keyOf(idOf(cookie))
  const [primary, secondary] = client.serversFor(key, 2) as [string, string]
  const live = (await copies(key))[primary] as string
  assert.equal((await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })).statusCode, 200)
  const after = await copies(key)
  assert.equal(after[primary], '@dead')
  assert.equal(after[secondary], '@dead')
  assert.ok(!Object.values(after).some((value) => value?.includes('user-7')), 'the data itself is gone')

  // The secondary was partitioned away during the logout and comes back with the session.
  await observer.forServer(secondary).set(key, live, { ttl: 60 })
  assert.deepEqual(await whoami(app, cookie), { status: 200, userId: null }, 'the tombstone wins')
  await store.settle()
  assert.equal((await copies(key))[secondary], '@dead', 'and is copied over the stale one')

  // A restarted primary lost its tombstone while the secondary kept one.
  await observer.forServer(primary).delete(key)
  assert.deepEqual(await whoami(app, cookie), { status: 200, userId: null })
  const count = await app.inject({ method: 'POST', url: '/count', cookies: { sid: cookie } })
  assert.notEqual(idOf(cookieOf(count)), idOf(cookie), 'a change after logout starts a new session')
})

for (const reached of ['primary', 'secondary'] as const) {
  test(`regenerate() after a logout that reached only the ${reached} starts an empty session: a tombstone on any replica means gone`, async (t) => {
    const { app, client } = await setup(t)
    let release = (): void => {}
    const released = new Promise<void>((resolve) => { release = resolve })
    let arrived = (): void => {}
    const loaded = new Promise<void>((resolve) => { arrived = resolve })
    app.post('/switch', async (request) => {
      arrived()
      await released
      await request.session.regenerate()
      return { userId: request.session.get('userId') ?? null }
    })
    const cookie = cookieOf(await app.inject({ method: 'POST', url: '/mine/9' }))
    const key = keyOf(idOf(cookie))
    const [primary, secondary] = client.serversFor(key, 2) as [string, string]
    const pending = app.inject({ method: 'POST', url: '/switch', cookies: { sid: cookie } })
    await loaded
    // The logout after the load reached one replica only (the other was down
    // at that moment): the tombstone it left there is all that says gone. No
    // load runs in between, which would copy it over the live copy.
    await observer.forServer(reached === 'primary' ? primary : secondary).set(key, '@dead', { ttl: 60 })
    release()
    const response = await pending
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), { userId: null }, 'none of the destroyed session\'s data')
    assert.match(response.headers['set-cookie'] as string, /^sid=; Max-Age=0/, 'nothing stored: the cookie is cleared')
  })
}

test('a server back empty after a restart: sessions load from the other replica and its copies are restored', async (t) => {
  const { app, store, client } = await setup(t)
  const cookies = await Promise.all(Array.from({ length: 30 }, async (_, i) => cookieOf(await app.inject({ method: 'POST', url: `/mine/r${i}` }))))
  const target = servers[0] as MemcachedServer
  await target.restart()
  const holders = cookies.filter((cookie) => client.serversFor(keyOf(idOf(cookie)), 2).includes(target.address))
  assert.ok(holders.length > 0)
  assert.ok(await eventually(5000, async () => await client.forServer(target.address).version().then(() => true, () => false)))
  await sleep(SUSPECT_MS)
  for (const [i, cookie] of cookies.entries()) assert.deepEqual(await whoami(app, cookie), { status: 200, userId: `user-r${i}` })
  await store.settle()
  for (const cookie of holders) {
    assert.match((await observer.forServer(target.address).get(keyOf(idOf(cookie))))?.toString() ?? '', STAMPED, 'copy restored on the restarted server')
  }
})

test('a hanging replica costs a request at most one client timeout, and the request succeeds from the other copy', async (t) => {
  // A handler slower than the client's reconnect backoff: without the store
  // skipping the replica that just timed out, the save would wait a second timeout.
  const HANDLER_MS = 200
  const proxy = await FaultProxy.start({ host: servers[0]?.host ?? '', port: servers[0]?.port ?? 0 })
  t.after(() => proxy.close())
  const addresses = [proxy.address, servers[1]?.address ?? '', servers[2]?.address ?? '']
  const { app, client } = await setup(t, {}, addresses)
  app.post<{ Params: { n: string } }>('/slow/:n', async (request) => {
    await sleep(HANDLER_MS)
    request.session.set('userId', `user-${request.params.n}`)
    return { ok: true }
  })
  const cookies: string[] = []
  while (cookies.length < 8) {
    const cookie = cookieOf(await app.inject({ method: 'POST', url: `/mine/h${cookies.length}` }))
    if (client.serversFor(keyOf(idOf(cookie)), 2).includes(proxy.address)) cookies.push(cookie)
  }
  proxy.blackhole()
  const results = await Promise.all(cookies.map(async (cookie, i) => {
    const started = Date.now()
    const response = await app.inject({ method: 'POST', url: `/slow/h${i}b`, cookies: { sid: cookie } })
    return { status: response.statusCode, ms: Date.now() - started }
  }))
  for (const result of results) {
    assert.equal(result.status, 200)
    assert.ok(result.ms < HANDLER_MS + TIMEOUT + 300, `answered in ${result.ms} ms`)
  }
  for (const [i, cookie] of cookies.entries()) assert.deepEqual(await whoami(app, cookie), { status: 200, userId: `user-h${i}b` })
})

test('a background repair that fails is counted, never an unhandled rejection', async (t) => {
  const proxy = await FaultProxy.start({ host: servers[0]?.host ?? '', port: servers[0]?.port ?? 0 })
  t.after(() => proxy.close())
  const client = fastClient([proxy.address, servers[1]?.address ?? ''])
  t.after(() => client.close())
  const store = new MemcachedStore({ client, replicas: 2 })
  const key = `replica-repair-fails:${process.pid}`
  assert.equal(await store.add(key, '1:', 60), true)
  await client.forServer(proxy.address).delete(key)
  // The miss ("END\r\n", 5 bytes) gets through; the connection is reset before the add's reply.
  proxy.resetAfter(5)
  assert.equal((await store.get(key))?.value, '1:')
  await store.settle()
  assert.equal(store.counters.failed, 1)
  assert.equal(store.counters.repaired, 0)
  proxy.pass()
  await store.close()
})

test('1,000 sessions with replicas 2 on 3 servers survive kill -9 of each server in turn', async (t) => {
  const { app, store, client } = await setup(t)
  const cookies: string[] = []
  for (let batch = 0; batch < 10; batch++) {
    cookies.push(...await Promise.all(Array.from({ length: 100 }, async (_, i) =>
      cookieOf(await app.inject({ method: 'POST', url: `/mine/${batch * 100 + i}` })))))
  }
  async function checkAll (phase: string): Promise<void> {
    const lost: number[] = []
    for (let from = 0; from < cookies.length; from += 100) {
      const results = await Promise.all(cookies.slice(from, from + 100).map(async (cookie) => await whoami(app, cookie)))
      results.forEach((result, i) => { if (result.status !== 200 || result.userId !== `user-${from + i}`) lost.push(from + i) })
    }
    assert.deepEqual(lost, [], `${phase}: every session loads with its data`)
    await store.settle()
  }
  for (const victim of servers) {
    await victim.kill()
    await checkAll(`${victim.address} killed`)
    await victim.restart()
    assert.ok(await eventually(RETRY_DELAY + 3000, () => client.liveServers.includes(victim.address)), 'back in the ring')
    await sleep(SUSPECT_MS)
    await checkAll(`${victim.address} back empty`)
  }
  assert.ok(store.counters.repaired >= 1000, `copies restored: ${store.counters.repaired}`)
})
