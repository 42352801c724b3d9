// How sessions are written: add for new ones, cas with a key-level merge for
// existing ones, no resurrection, save only when changed, expiry, destroy and
// regenerate. Each test runs against real memcached, most also against
// MemoryStore, which must behave the same.
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { MemcachedStore, MemoryStore, type MemcachedSessionOptions, type SessionStore } from '../../src/index.js'
import { CountingStore, buildApp, cookieOf, idOf, keyOf, setCookieOf, signCookie, sleep, useMemcached } from './helpers.js'

const memcached = useMemcached()

const KINDS = ['memcached', 'memory'] as const
type Kind = typeof KINDS[number]

function makeStore (t: TestContext, kind: Kind): SessionStore {
  if (kind === 'memcached') return new MemcachedStore({ client: memcached.client })
  const store = new MemoryStore()
  t.after(() => store.close())
  return store
}

async function setup (t: TestContext, kind: Kind, options: Partial<MemcachedSessionOptions> = {}): Promise<{ app: FastifyInstance, store: CountingStore }> {
  const store = new CountingStore(makeStore(t, kind))
  const app = await buildApp({ store, ...options })
  t.after(() => app.close())
  return { app, store }
}

async function count (app: FastifyInstance, cookie?: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/count', cookies: cookie === undefined ? {} : { sid: cookie } })
  assert.equal(response.statusCode, 200)
  return setCookieOf(response) === undefined ? cookie ?? '' : cookieOf(response)
}

async function peek (app: FastifyInstance, cookie: string): Promise<{ views: number | null, isNew: boolean }> {
  return (await app.inject({ url: '/peek', cookies: { sid: cookie } })).json()
}

/** A promise the test opens by hand, to interleave requests deterministically. */
function gate (): { wait: Promise<void>, open: () => void } {
  let open = (): void => {}
  const wait = new Promise<void>((resolve) => { open = resolve })
  return { wait, open }
}

/** Adds `POST /slow/:name`: loads the session, waits for `release`, then sets `name`. */
function slowSetter (app: FastifyInstance, release: Promise<void>, arrived: () => void): void {
  app.post<{ Params: { name: `k${number}` } }>('/slow/:name', async (request) => {
    arrived()
    await release
    request.session.set(request.params.name, 1)
    return { ok: true }
  })
}

for (const kind of KINDS) {
  describe(`writes (${kind})`, () => {
    test('a new session is written with add, an existing one with cas, an unchanged one only touched', async (t) => {
      const { app, store } = await setup(t, kind)
      const cookie = await count(app)
      assert.deepEqual(store.calls, { get: 0, add: 1, cas: 0, touch: 0, delete: 0 })
      store.reset()
      await count(app, cookie)
      assert.deepEqual(store.calls, { get: 1, add: 0, cas: 1, touch: 0, delete: 0 })
      store.reset()
      assert.deepEqual(await peek(app, cookie), { views: 2, isNew: false })
      assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 1, delete: 0 })
    })

    test('without rolling an unchanged session costs one get; touch() asks for a renewal', async (t) => {
      const { app, store } = await setup(t, kind, { rolling: false })
      app.get('/touch', async (request) => { request.session.touch(); return {} })
      const cookie = await count(app)
      store.reset()
      await peek(app, cookie)
      assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 0, delete: 0 })
      store.reset()
      await app.inject({ url: '/touch', cookies: { sid: cookie } })
      assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 1, delete: 0 })
    })

    test('an id collision never overwrites: add fails, a new id is drawn', async (t) => {
      const inner = makeStore(t, kind)
      let victim: string | undefined
      const colliding: SessionStore = {
        get: async (key) => await inner.get(key),
        add: async (key, value, ttl) => {
          if (victim === undefined) {
            victim = key
            await inner.add(key, '1::{"userId":"victim"}', 60)
          }
          return await inner.add(key, value, ttl)
        },
        cas: async (key, value, version, ttl) => await inner.cas(key, value, version, ttl),
        touch: async (key, ttl) => await inner.touch(key, ttl),
        delete: async (key) => await inner.delete(key)
      }
      const app = await buildApp({ store: colliding })
      t.after(() => app.close())
      const cookie = await count(app)
      assert.ok(victim !== undefined)
      assert.notEqual(keyOf(idOf(cookie)), victim)
      assert.equal((await inner.get(victim))?.value, '1::{"userId":"victim"}')
      assert.deepEqual(await peek(app, cookie), { views: 1, isNew: false })
    })

    test('two requests changing different keys both keep their change (the second save waits, re-reads and merges)', async (t) => {
      const { app, store } = await setup(t, kind)
      const release = gate()
      let arrivals = 0
      const bothLoaded = gate()
      slowSetter(app, release.wait, () => { if (++arrivals === 2) bothLoaded.open() })
      app.get('/all', async (request) => ({ k1: request.session.get('k1'), k2: request.session.get('k2'), views: request.session.get('views') }))
      const cookie = await count(app)
      store.reset()
      const first = app.inject({ method: 'POST', url: '/slow/k1', cookies: { sid: cookie } })
      const second = app.inject({ method: 'POST', url: '/slow/k2', cookies: { sid: cookie } })
      await bothLoaded.wait
      release.open()
      const responses = await Promise.all([first, second])
      assert.deepEqual(responses.map((response) => response.statusCode), [200, 200])
      // Both loaded the same version; the second save queues behind the
      // first, then re-reads once and merges: no failed cas.
      assert.equal(store.calls.cas, 2)
      assert.equal(store.calls.get, 3)
      const all = await app.inject({ url: '/all', cookies: { sid: cookie } })
      assert.deepEqual(all.json(), { k1: 1, k2: 1, views: 1 })
    })

    test('a change racing a logout does not resurrect the session', async (t) => {
      const { app, store } = await setup(t, kind)
      const release = gate()
      const loaded = gate()
      slowSetter(app, release.wait, loaded.open)
      const cookie = await count(app)
      const slow = app.inject({ method: 'POST', url: '/slow/k1', cookies: { sid: cookie } })
      await loaded.wait
      const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
      assert.equal(logout.statusCode, 200)
      release.open()
      const response = await slow
      assert.equal(response.statusCode, 200)
      assert.equal(setCookieOf(response), undefined)
      assert.equal(await store.inner.get(keyOf(idOf(cookie))), undefined)
      assert.deepEqual(await peek(app, cookie), { views: null, isNew: true })
    })

    test('20 parallel requests of one session, each setting its own key after an await: all 20 kept', async (t) => {
      const { app } = await setup(t, kind)
      app.post<{ Params: { name: `k${number}` } }>('/later/:name', async (request) => {
        await sleep(Math.random() * 20)
        request.session.set(request.params.name, 1)
        return { ok: true }
      })
      const names = Array.from({ length: 20 }, (_, i) => `k${i}`)
      app.get('/keys', async (request) => names.filter((name) => request.session.get(name as `k${number}`) === 1))
      const cookie = await count(app)
      const responses = await Promise.all(names.map(async (name) => await app.inject({ method: 'POST', url: `/later/${name}`, cookies: { sid: cookie } })))
      assert.ok(responses.every((response) => response.statusCode === 200))
      const kept = await app.inject({ url: '/keys', cookies: { sid: cookie } })
      assert.deepEqual(kept.json(), names)
    })

    test('destroy() deletes the data and clears the cookie; replaying it finds nothing', async (t) => {
      const { app, store } = await setup(t, kind)
      const login = await app.inject({ method: 'POST', url: '/login' })
      const cookie = cookieOf(login)
      assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: cookie } })).json(), { userId: 'alice' })
      const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
      assert.equal(setCookieOf(logout), 'sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax')
      assert.equal(logout.headers['cache-control'], 'private, no-store')
      assert.equal(await store.inner.get(keyOf(idOf(cookie))), undefined)
      const replay = await app.inject({ url: '/whoami', cookies: { sid: cookie } })
      assert.deepEqual(replay.json(), { userId: null })
      assert.equal(setCookieOf(replay), undefined)
    })

    test('regenerate() moves the data to a new id and deletes the old one', async (t) => {
      const { app, store } = await setup(t, kind)
      const before = await count(app, await count(app))
      const login = await app.inject({ method: 'POST', url: '/login', cookies: { sid: before } })
      const after = cookieOf(login)
      assert.notEqual(idOf(after), idOf(before))
      assert.equal(login.json<{ id: string }>().id, idOf(after))
      assert.equal(await store.inner.get(keyOf(idOf(before))), undefined)
      assert.deepEqual(await peek(app, after), { views: 2, isNew: false })
      assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: after } })).json(), { userId: 'alice' })
      assert.deepEqual(await peek(app, before), { views: null, isNew: true })
    })

    test('save() writes now; later changes in the same request are saved too; reload() drops unsaved ones', async (t) => {
      const { app } = await setup(t, kind)
      app.post('/twice', async (request) => {
        request.session.set('views', 10)
        await request.session.save()
        request.session.set('userId', 'carol')
        return {}
      })
      app.post('/undo', async (request) => {
        request.session.set('views', 99)
        await request.session.reload()
        return { views: request.session.get('views') }
      })
      const cookie = cookieOf(await app.inject({ method: 'POST', url: '/twice' }))
      assert.deepEqual(await peek(app, cookie), { views: 10, isNew: false })
      assert.deepEqual((await app.inject({ url: '/whoami', cookies: { sid: cookie } })).json(), { userId: 'carol' })
      assert.deepEqual((await app.inject({ method: 'POST', url: '/undo', cookies: { sid: cookie } })).json(), { views: 10 })
      assert.deepEqual(await peek(app, cookie), { views: 10, isNew: false })
    })

    test('TTLs: the idle ttl on every write and touch, cut short by absoluteTtl', async (t) => {
      const { app, store } = await setup(t, kind, { ttl: 1234, absoluteTtl: 5000 })
      const cookie = await count(app)
      await count(app, cookie)
      await peek(app, cookie)
      assert.deepEqual(store.ttls, [1234, 1234, 1234])
      const { app: short, store: shortStore } = await setup(t, kind, { ttl: 86_400, absoluteTtl: 100 })
      await count(short)
      assert.ok(shortStore.ttls[0] !== undefined && shortStore.ttls[0] <= 100 && shortStore.ttls[0] >= 99)
    })

    test('absoluteTtl is enforced on load, whatever the store still holds', async (t) => {
      const { app, store } = await setup(t, kind, { absoluteTtl: 500 })
      const now = Math.floor(Date.now() / 1000)
      for (const [age, expected] of [[1000, null], [100, 5]] as const) {
        const id = Buffer.alloc(32, age % 256).toString('base64url')
        await store.inner.delete(keyOf(id))
        assert.equal(await store.inner.add(keyOf(id), `${now - age}::{"views":5}`, 3600), true)
        assert.deepEqual((await peek(app, signCookie(id))).views, expected, `age ${age}`)
      }
    })

    test('TTLs longer than 30 days work for add, cas and touch', async (t) => {
      const { app } = await setup(t, kind, { ttl: 40 * 86_400, absoluteTtl: 90 * 86_400 })
      const cookie = await count(app)
      assert.deepEqual(await peek(app, cookie), { views: 1, isNew: false })
      await count(app, cookie)
      assert.deepEqual(await peek(app, cookie), { views: 2, isNew: false })
      assert.deepEqual(await peek(app, cookie), { views: 2, isNew: false })
    })

    test('a session too large for the store fails with a clear 500; the stored one stays intact', async (t) => {
      const { app } = await setup(t, kind)
      app.post('/big', async (request) => {
        request.session.set('cart', ['x'.repeat(2 * 1024 * 1024)])
        return {}
      })
      const cookie = await count(app)
      const response = await app.inject({ method: 'POST', url: '/big', cookies: { sid: cookie } })
      assert.equal(response.statusCode, 500)
      assert.match(response.json<{ message: string }>().message, /^fastify-memcached-session: session too large/)
      assert.equal(response.json<{ code: string }>().code, 'SESSION_TOO_LARGE')
      assert.equal(setCookieOf(response), undefined)
      assert.deepEqual(await peek(app, cookie), { views: 1, isNew: false })
      const fresh = await app.inject({ method: 'POST', url: '/big' })
      assert.equal(fresh.statusCode, 500)
      assert.equal(setCookieOf(fresh), undefined)
    })
  })
}

test('idle ttl expires unused sessions, rolling keeps used ones, absoluteTtl ends even used ones', async (t) => {
  // memcached's clock ticks once a second: an item with ttl 3 lives 2 to 4 s,
  // so touches every ~0.5 s keep it with a wide margin, and 5 s ends it.
  const { app: rolling } = await setup(t, 'memcached', { ttl: 3 })
  const { app: fixed } = await setup(t, 'memcached', { ttl: 3, rolling: false })
  const { app: bounded } = await setup(t, 'memcached', { ttl: 60, absoluteTtl: 2 })
  const used = await count(rolling)
  const unused = await count(rolling)
  const notRolled = await count(fixed)
  const capped = await count(bounded)
  for (let i = 0; i < 10; i++) {
    await sleep(500)
    assert.equal((await peek(rolling, used)).views, 1, `rolling session alive at step ${i}`)
    await peek(fixed, notRolled)
    await peek(bounded, capped)
  }
  assert.equal((await peek(rolling, unused)).views, null)
  assert.equal((await peek(fixed, notRolled)).views, null)
  assert.equal((await peek(bounded, capped)).views, null)
  assert.equal((await peek(rolling, used)).views, 1)
})
