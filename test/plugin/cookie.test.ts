// The cookie and the id: what the browser holds, what is never adopted, and
// what a request without a session costs. Against real memcached.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import crypto, { randomBytes } from 'node:crypto'
import { sign } from '@fastify/cookie'
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import { MemcachedStore, type MemcachedSessionOptions } from '../../src/index.js'
import { CountingStore, OLD_SECRET, SECRET, buildApp, cookieOf, cookieVerifies, idOf, keyOf, setCookieOf, signCookie, useMemcached } from './helpers.js'

const memcached = useMemcached()

async function setup (t: TestContext, options: Partial<MemcachedSessionOptions> = {}): Promise<{ app: FastifyInstance, store: CountingStore }> {
  const store = new CountingStore(new MemcachedStore({ client: memcached.client }))
  const app = await buildApp({ store, ...options })
  t.after(() => app.close())
  return { app, store }
}

async function login (app: FastifyInstance): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/count' })
  assert.equal(response.statusCode, 200)
  return cookieOf(response)
}

async function stats (): Promise<Record<string, string>> {
  const all = await memcached.client.stats()
  const mine = all[memcached.server.address]
  assert.ok(mine !== undefined)
  return mine
}

test('no cookie and an untouched session: no store call, no Set-Cookie', async (t) => {
  const { app, store } = await setup(t)
  const before = await stats()
  const response = await app.inject({ url: '/peek' })
  assert.equal(response.statusCode, 200)
  assert.deepEqual(response.json(), { views: null, isNew: true })
  assert.equal(response.headers['set-cookie'], undefined)
  assert.equal(response.headers['cache-control'], undefined)
  assert.equal(store.total, 0)
  const afterwards = await stats()
  // Only the stats round trip itself reached memcached.
  for (const name of ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_misses', 'delete_hits']) {
    assert.equal(afterwards[name], before[name], name)
  }
})

test('reading session.id alone draws an id but stores nothing', async (t) => {
  const { app, store } = await setup(t)
  const response = await app.inject({ url: '/id' })
  assert.match(response.json<{ id: string }>().id, /^[A-Za-z0-9_-]{43}$/)
  assert.equal(setCookieOf(response), undefined)
  assert.equal(store.total, 0)
})

test('the cookie is <id>.<HMAC-SHA256 signature> with the default attributes', async (t) => {
  const { app } = await setup(t)
  const response = await app.inject({ method: 'POST', url: '/count' })
  const line = setCookieOf(response)
  assert.ok(line !== undefined)
  assert.match(line, /^sid=[A-Za-z0-9_-]{43}\.[A-Za-z0-9+/]{43}; Path=\/; HttpOnly; SameSite=Lax$/)
  const value = cookieOf(response)
  assert.ok(cookieVerifies(value, SECRET))
  assert.equal(response.headers['cache-control'], 'no-store')
  assert.equal(Buffer.from(idOf(value), 'base64url').length, 32)
})

test('the next request with the cookie sees the data and gets no new cookie', async (t) => {
  const { app, store } = await setup(t)
  const cookie = await login(app)
  store.reset()
  const response = await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual(response.json(), { views: 1, isNew: false })
  assert.equal(setCookieOf(response), undefined)
  assert.equal(response.headers['cache-control'], 'private, no-store')
  assert.deepEqual(store.calls, { get: 1, add: 0, cas: 0, touch: 1, delete: 0 })
})

test('a bad signature gives a fresh session with a new id, without a store call', async (t) => {
  const { app, store } = await setup(t)
  const cookie = await login(app)
  const tampered = cookie.slice(0, -1) + (cookie.endsWith('A') ? 'B' : 'A')
  const forged = signCookie(idOf(cookie), 'some-other-secret-that-is-long-enough!!')
  for (const value of [tampered, forged]) {
    store.reset()
    const peek = await app.inject({ url: '/peek', cookies: { sid: value } })
    assert.deepEqual(peek.json(), { views: null, isNew: true })
    assert.equal(store.total, 0)
    const count = await app.inject({ method: 'POST', url: '/count', cookies: { sid: value } })
    assert.deepEqual(count.json(), { views: 1 })
    assert.notEqual(idOf(cookieOf(count)), idOf(cookie))
  }
  const original = await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual(original.json(), { views: 1, isNew: false })
})

test('a malformed cookie costs no store call, signed or not', async (t) => {
  const { app, store } = await setup(t)
  const shortId = randomBytes(16).toString('base64url')
  const longId = randomBytes(48).toString('base64url')
  const values = [
    '', 'garbage', 'x'.repeat(87), `${'!'.repeat(43)}.${'a'.repeat(43)}`,
    signCookie(shortId), signCookie(longId), signCookie('a.b'), '%E0%A4%A'
  ]
  for (const value of values) {
    const response = await app.inject({ url: '/peek', headers: { cookie: `sid=${value}` } })
    assert.equal(response.statusCode, 200, value)
    assert.deepEqual(response.json(), { views: null, isNew: true }, value)
    assert.equal(setCookieOf(response), undefined, value)
  }
  assert.equal(store.total, 0)
})

test('a well-signed id the store does not know is never adopted', async (t) => {
  const { app, store } = await setup(t)
  const planted = randomBytes(32).toString('base64url')
  const value = signCookie(planted)
  const response = await app.inject({ method: 'POST', url: '/count', cookies: { sid: value } })
  assert.deepEqual(response.json(), { views: 1 })
  assert.equal(store.calls.get, 1)
  assert.equal(store.calls.add, 1)
  const issued = idOf(cookieOf(response))
  assert.notEqual(issued, planted)
  assert.equal(await memcached.client.get(keyOf(planted)), undefined)
  assert.ok(await memcached.client.get(keyOf(issued)) !== undefined)
})

test('secret rotation: an older secret verifies and the cookie is re-signed with the newest', async (t) => {
  const before = await setup(t, { secret: OLD_SECRET })
  const oldCookie = await login(before.app)
  const { app } = await setup(t, { secret: [SECRET, OLD_SECRET] })
  const response = await app.inject({ url: '/peek', cookies: { sid: oldCookie } })
  assert.deepEqual(response.json(), { views: 1, isNew: false })
  const reissued = cookieOf(response)
  assert.equal(idOf(reissued), idOf(oldCookie))
  assert.ok(cookieVerifies(reissued, SECRET))
  assert.equal(response.headers['cache-control'], 'private, no-store')
  const again = await app.inject({ url: '/peek', cookies: { sid: reissued } })
  assert.deepEqual(again.json(), { views: 1, isNew: false })
  assert.equal(setCookieOf(again), undefined)
  // Once the old secret is dropped, its cookies are dead.
  const { app: later } = await setup(t, { secret: SECRET })
  const dead = await later.inject({ url: '/peek', cookies: { sid: oldCookie } })
  assert.deepEqual(dead.json(), { views: null, isNew: true })
})

test('memcached holds the session under prefix + sha256(id), never under the id', async (t) => {
  const { app } = await setup(t, { prefix: 'myapp:s:' })
  const cookie = await login(app)
  const id = idOf(cookie)
  const stored = await memcached.client.get(keyOf(id, 'myapp:s:'))
  assert.ok(stored !== undefined)
  assert.ok(!stored.toString().includes(id))
  assert.equal(await memcached.client.get(`myapp:s:${id}`), undefined)
  assert.equal(await memcached.client.get(keyOf(id)), undefined)
  const dump = await metadump()
  assert.ok(dump.includes(encodeURIComponent(keyOf(id, 'myapp:s:'))), 'the dump lists the hashed key')
  assert.ok(!dump.includes(id) && !dump.includes(encodeURIComponent(id)), 'and never the id')
})

/** Every key memcached holds, as `lru_crawler metadump all` prints them. */
async function metadump (): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect({ host: memcached.server.host, port: memcached.server.port })
    let text = ''
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      if (text.endsWith('END\r\n')) {
        socket.end()
        resolve(text)
      }
    })
    socket.on('error', reject)
    socket.write('lru_crawler metadump all\r\n')
  })
}

test('cookie attributes: Secure over HTTPS, Max-Age only when asked, custom name, path and domain', async (t) => {
  const { app } = await setup(t)
  const https = await app.inject({ method: 'POST', url: '/count', headers: { 'x-forwarded-proto': 'https' } })
  assert.doesNotMatch(setCookieOf(https) ?? '', /Secure/)

  const { app: behindProxy } = await setupWith(t, { trustProxy: true })
  const secure = await behindProxy.inject({ method: 'POST', url: '/count', headers: { 'x-forwarded-proto': 'https' } })
  assert.match(setCookieOf(secure) ?? '', /; Secure$/)
  const plain = await behindProxy.inject({ method: 'POST', url: '/count' })
  assert.doesNotMatch(setCookieOf(plain) ?? '', /Secure|Max-Age/)

  const { app: custom } = await setup(t, {
    cookieName: 'app_session',
    cookie: { path: '/app', domain: 'example.com', sameSite: 'strict', maxAge: 3600, secure: true }
  })
  const line = setCookieOf(await custom.inject({ method: 'POST', url: '/count' }), 'app_session')
  assert.equal(line?.replace(/=[^;]+;/, '=X;'), 'app_session=X; Max-Age=3600; Path=/app; Domain=example.com; HttpOnly; SameSite=Strict; Secure')
})

async function setupWith (t: TestContext, fastify: { trustProxy: boolean }): Promise<{ app: FastifyInstance }> {
  const app = await buildApp({ store: new MemcachedStore({ client: memcached.client }) }, fastify)
  t.after(() => app.close())
  return { app }
}

test('session.cookie.maxAge makes a persistent cookie, renewed on each response under rolling', async (t) => {
  const { app } = await setup(t)
  app.post('/remember', async (request) => {
    request.session.set('userId', 'bob')
    request.session.cookie.maxAge = 30 * 86_400
    return { maxAge: request.session.cookie.maxAge }
  })
  const first = await app.inject({ method: 'POST', url: '/remember' })
  assert.deepEqual(first.json(), { maxAge: 30 * 86_400 })
  // absoluteTtl (7 days by default) caps what the browser is told.
  assert.match(setCookieOf(first) ?? '', /; Max-Age=60480\d; /)
  const next = await app.inject({ url: '/whoami', cookies: { sid: cookieOf(first) } })
  assert.deepEqual(next.json(), { userId: 'bob' })
  assert.match(setCookieOf(next) ?? '', /; Max-Age=60\d{4}; /)
  assert.equal(next.headers['cache-control'], 'private, no-store')
})

test('Cache-Control: a route\'s own value wins over no-store', async (t) => {
  const { app } = await setup(t)
  app.post('/cached', async (request, reply) => {
    request.session.set('views', 1)
    void reply.header('cache-control', 'private, max-age=10')
    return {}
  })
  const response = await app.inject({ method: 'POST', url: '/cached' })
  assert.ok(setCookieOf(response) !== undefined)
  assert.equal(response.headers['cache-control'], 'private, max-age=10')
})

test('config: { session: false } routes do no session work, even with a cookie', async (t) => {
  const { app, store } = await setup(t)
  const cookie = await login(app)
  store.reset()
  const response = await app.inject({ url: '/off', cookies: { sid: cookie } })
  assert.deepEqual(response.json(), { session: null })
  assert.equal(setCookieOf(response), undefined)
  assert.equal(store.total, 0)
})

test('other cookies in the header are left alone and do not confuse the lookup', async (t) => {
  const { app } = await setup(t)
  const cookie = await login(app)
  const response = await app.inject({ url: '/peek', headers: { cookie: `xsid=1; a=sid=2;  sid=${cookie}; z=3` } })
  assert.deepEqual(response.json(), { views: 1, isNew: false })
})

test('saveUninitialized: every visitor gets a stored session and a cookie', async (t) => {
  const { app, store } = await setup(t, { saveUninitialized: true })
  const response = await app.inject({ url: '/peek' })
  assert.deepEqual(response.json(), { views: null, isNew: true })
  const cookie = cookieOf(response)
  assert.deepEqual(store.calls, { get: 0, add: 1, cas: 0, touch: 0, delete: 0 })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookie } })).json(), { views: null, isNew: false })
})

test('saveUninitialized: regenerate() of an empty session stores the new one under a new id and deletes the old', async (t) => {
  const { app, store } = await setup(t, { saveUninitialized: true })
  app.post('/fresh-id', async (request) => {
    await request.session.regenerate()
    return { isNew: request.session.isNew }
  })
  const before = cookieOf(await app.inject({ url: '/peek' }))
  store.reset()
  const regenerated = await app.inject({ method: 'POST', url: '/fresh-id', cookies: { sid: before } })
  assert.equal(regenerated.statusCode, 200)
  const after = cookieOf(regenerated)
  assert.notEqual(idOf(after), idOf(before))
  assert.deepEqual(store.calls, { get: 1, add: 1, cas: 0, touch: 0, delete: 1 })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: after } })).json(), { views: null, isNew: false })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: before } })).json(), { views: null, isNew: true })
  // A first visit that regenerates is stored too, as every first visit is.
  store.reset()
  const first = await app.inject({ method: 'POST', url: '/fresh-id' })
  assert.deepEqual(store.calls, { get: 0, add: 1, cas: 0, touch: 0, delete: 0 })
  assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: cookieOf(first) } })).json(), { views: null, isNew: false })
})

test('hot path: no cookie costs no crypto; a cookie costs one HMAC and one SHA-256 the first time, none after', async (t) => {
  const { app } = await setup(t)
  const cookie = await login(app)
  const hmac = t.mock.method(crypto, 'createHmac')
  const hash = t.mock.method(crypto, 'createHash')
  const random = t.mock.method(crypto, 'randomBytes')
  await app.inject({ url: '/peek' })
  assert.deepEqual([hmac.mock.callCount(), hash.mock.callCount(), random.mock.callCount()], [0, 0, 0])
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual([hmac.mock.callCount(), hash.mock.callCount(), random.mock.callCount()], [1, 1, 0])
  // A verified value is remembered with its id's hash: the session's next
  // request costs no crypto at all.
  await app.inject({ url: '/peek', cookies: { sid: cookie } })
  assert.deepEqual([hmac.mock.callCount(), hash.mock.callCount(), random.mock.callCount()], [1, 1, 0])
  // A forged value is never remembered: each try costs its HMAC, and gets nowhere.
  const forged = `${cookie.slice(0, 44)}${'A'.repeat(43)}`
  for (let i = 0; i < 3; i++) {
    assert.deepEqual((await app.inject({ url: '/peek', cookies: { sid: forged } })).json(), { views: null, isNew: true })
  }
  assert.equal(hmac.mock.callCount(), 4)
})

test('lang=en sid=<A>; sid=<B> loads B, as the cookie package reads the header; a tab is no separator either', async (t) => {
  const { app, store } = await setup(t)
  const a = await login(app)
  const b = await login(app)
  assert.deepEqual((await app.inject({ method: 'POST', url: '/count', cookies: { sid: b } })).json(), { views: 2 })
  assert.notEqual(idOf(a), idOf(b))
  for (const header of [`lang=en sid=${a}; sid=${b}`, `lang=en\tsid=${a}; sid=${b}`]) {
    const response = await app.inject({ url: '/peek', headers: { cookie: header } })
    assert.deepEqual(response.json(), { views: 2, isNew: false }, header)
  }
  // A name inside another cookie's value is no cookie at all: no store call.
  store.reset()
  const inside = await app.inject({ url: '/peek', headers: { cookie: `lang=en sid=${a}` } })
  assert.deepEqual(inside.json(), { views: null, isNew: true })
  assert.equal(store.total, 0)
})

test('a cookie issued under one name is refused under another, with the same secret, store and prefix', async (t) => {
  const { app: user, store } = await setup(t, { cookieName: 'sid' })
  const { app: admin } = await setup(t, { cookieName: 'admin_sid' })
  const issued = await login(user)
  store.reset()
  const replayed = await admin.inject({ url: '/peek', headers: { cookie: `admin_sid=${issued}` } })
  assert.deepEqual(replayed.json(), { views: null, isNew: true })
  assert.equal(store.total, 0, 'refused before any store call')
  assert.equal(setCookieOf(replayed, 'admin_sid'), undefined)
  // Its own name still works, in both apps.
  assert.deepEqual((await user.inject({ url: '/peek', cookies: { sid: issued } })).json(), { views: 1, isNew: false })
  const adminCookie = cookieOf(await admin.inject({ method: 'POST', url: '/count' }), 'admin_sid')
  assert.deepEqual((await admin.inject({ url: '/peek', headers: { cookie: `admin_sid=${adminCookie}` } })).json(), { views: 1, isNew: false })
  assert.deepEqual((await user.inject({ url: '/peek', cookies: { sid: adminCookie } })).json(), { views: null, isNew: true })
  // The signature covers `<name>=<id>`; one over the bare id (the format
  // before names were bound) is refused too.
  assert.ok(cookieVerifies(issued, SECRET, 'sid'))
  assert.ok(!cookieVerifies(issued, SECRET, 'admin_sid'))
  const unbound = `${idOf(issued)}.${sign(idOf(issued), SECRET).slice(44)}`
  assert.deepEqual((await user.inject({ url: '/peek', cookies: { sid: unbound } })).json(), { views: null, isNew: true })
})

test('the verified-cookie cache is per name: a value verified under sid is not taken from the cache under admin_sid', async (t) => {
  const { app: user } = await setup(t, { cookieName: 'sid' })
  const { app: admin } = await setup(t, { cookieName: 'admin_sid' })
  const issued = await login(user)
  // Warm the cache of the sid app, then replay under the other name, twice.
  assert.deepEqual((await user.inject({ url: '/peek', cookies: { sid: issued } })).json(), { views: 1, isNew: false })
  for (let i = 0; i < 2; i++) {
    assert.deepEqual((await admin.inject({ url: '/peek', headers: { cookie: `admin_sid=${issued}` } })).json(), { views: null, isNew: true })
  }
})

test('secret rotation with names bound: an older secret verifies under the same name only, re-signed by the newest', async (t) => {
  const { app: before } = await setup(t, { secret: OLD_SECRET, cookieName: 'app_sid' })
  const oldCookie = cookieOf(await before.inject({ method: 'POST', url: '/count' }), 'app_sid')
  const { app } = await setup(t, { secret: [SECRET, OLD_SECRET], cookieName: 'app_sid' })
  const response = await app.inject({ url: '/peek', headers: { cookie: `app_sid=${oldCookie}` } })
  assert.deepEqual(response.json(), { views: 1, isNew: false })
  const reissued = cookieOf(response, 'app_sid')
  assert.equal(idOf(reissued), idOf(oldCookie))
  assert.ok(cookieVerifies(reissued, SECRET, 'app_sid'))
  const { app: other } = await setup(t, { secret: [SECRET, OLD_SECRET], cookieName: 'sid' })
  assert.deepEqual((await other.inject({ url: '/peek', cookies: { sid: oldCookie } })).json(), { views: null, isNew: true })
})
