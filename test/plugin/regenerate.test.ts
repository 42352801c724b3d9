// regenerate() never brings back a session that is gone. A request loads its
// session, then calls regenerate() later (a slow request body, a slow
// handler); meanwhile the session is destroyed (logout) or expires (idle
// ttl, absoluteTtl). The new session must start empty, and the response
// clears the cookie: data is never copied from a record that no longer
// exists. Real memcached, and for the slow-body attack a real HTTP server
// and a raw socket.
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { MemcachedClient, type MemcachedSessionOptions } from '../../src/index.js'
import { MemcachedServer } from '../helpers/memcached.js'
import { buildApp, cookieOf, idOf, keyOf, setCookieOf, signCookie } from './helpers.js'

const CLEARED = 'sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; SameSite=Lax'

let server: MemcachedServer
let client: MemcachedClient
let observer: MemcachedClient

before(async () => {
  server = await MemcachedServer.start()
  client = new MemcachedClient({ servers: [server.address] })
  observer = new MemcachedClient({ servers: [server.address] })
})

after(async () => {
  await client.close()
  await observer.close()
  await server.stop()
})

/** A promise the test opens by hand, to interleave requests deterministically. */
function gate (): { wait: Promise<void>, open: () => void } {
  let open = (): void => {}
  const wait = new Promise<void>((resolve) => { open = resolve })
  return { wait, open }
}

/**
 * The app of `buildApp` plus `POST /switch` (an org switch: regenerate, then
 * optionally set `views`), which first waits for `hold` when one is given.
 */
async function setup (t: TestContext, options: Partial<MemcachedSessionOptions> = {}): Promise<{ app: FastifyInstance, hold: (wait: Promise<void>, arrived: () => void) => void }> {
  const app = await buildApp({ client, ...options })
  t.after(() => app.close())
  let held: { wait: Promise<void>, arrived: () => void } | undefined
  app.post<{ Body: { views?: number } | undefined }>('/switch', async (request) => {
    if (held !== undefined) {
      held.arrived()
      await held.wait
    }
    await request.session.regenerate()
    if (request.body?.views !== undefined) request.session.set('views', request.body.views)
    return { userId: request.session.get('userId') ?? null, isNew: request.session.isNew }
  })
  return { app, hold: (wait, arrived) => { held = { wait, arrived } } }
}

async function whoami (app: FastifyInstance, cookie: string): Promise<unknown> {
  return (await app.inject({ url: '/whoami', cookies: { sid: cookie } })).json()
}

/** Status, Set-Cookie lines and body of a raw HTTP/1.1 response read to the end of the connection. */
function parseResponse (raw: string): { status: number, setCookies: string[], body: string } {
  const split = raw.indexOf('\r\n\r\n')
  const lines = raw.slice(0, split).split('\r\n')
  const setCookies = lines.filter((line) => /^set-cookie:/i.test(line)).map((line) => line.slice(line.indexOf(':') + 1).trim())
  return { status: Number(lines[0]?.split(' ')[1]), setCookies, body: raw.slice(split + 4) }
}

for (const body of ['{}', '{"views":42}']) {
  test(`regenerate() after a logout that raced a slow request body starts an empty session (body ${body})`, async (t) => {
    const { app } = await setup(t)
    const loaded = gate()
    app.addHook('preParsing', async (request, _reply, payload) => {
      // onRequest (the session load) has run; the body is still held back.
      if (request.url === '/switch') loaded.open()
      return payload
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as net.AddressInfo
    const origin = `http://127.0.0.1:${port}`

    const login = await fetch(`${origin}/login`, { method: 'POST' })
    const cookie = /^sid=([^;]+)/.exec(login.headers.getSetCookie()[0] ?? '')?.[1] ?? ''
    assert.deepEqual(await whoami(app, cookie), { userId: 'alice' })

    // The attacker, holding a stolen cookie, sends the headers and keeps the body.
    const socket = net.connect({ host: '127.0.0.1', port })
    await once(socket, 'connect')
    let raw = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { raw += chunk })
    const closed = once(socket, 'end')
    socket.write(`POST /switch HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sid=${cookie}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`)
    await loaded.wait

    // The victim logs out.
    const logout = await fetch(`${origin}/logout`, { method: 'POST', headers: { cookie: `sid=${cookie}` } })
    assert.equal(logout.status, 200)
    assert.equal(await observer.get(keyOf(idOf(cookie))), undefined)

    socket.write(body)
    await closed
    const response = parseResponse(raw)
    assert.equal(response.status, 200)
    assert.deepEqual(JSON.parse(response.body), { userId: null, isNew: true }, 'none of the victim\'s data')
    assert.equal(await observer.get(keyOf(idOf(cookie))), undefined, 'the old session stays destroyed')
    if (body === '{}') {
      assert.deepEqual(response.setCookies, [CLEARED], 'nothing stored: the cookie is cleared')
    } else {
      // Set after regenerate(): a new session holding only that.
      assert.equal(response.setCookies.length, 1)
      const fresh = /^sid=([^;]+)/.exec(response.setCookies[0] ?? '')?.[1] ?? ''
      assert.notEqual(idOf(fresh), idOf(cookie))
      assert.deepEqual(await whoami(app, fresh), { userId: null })
      const peek = await app.inject({ url: '/peek', cookies: { sid: fresh } })
      assert.deepEqual(peek.json(), { views: 42, isNew: false })
    }
  })
}

/**
 * Logs in, then starts a POST /switch (which calls regenerate()) and holds it
 * after its session was loaded, until `release.open()`.
 */
async function switchHeldAfterLoad (t: TestContext, options: Partial<MemcachedSessionOptions>): Promise<{ cookie: string, pending: Promise<LightMyRequestResponse>, release: ReturnType<typeof gate> }> {
  const { app, hold } = await setup(t, options)
  const release = gate()
  const arrived = gate()
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  hold(release.wait, arrived.open)
  const pending = app.inject({ method: 'POST', url: '/switch', cookies: { sid: cookie } })
  await arrived.wait
  return { cookie, pending, release }
}

test('regenerate() of a session that idle-expired after the load starts an empty session and clears the cookie', async (t) => {
  const { cookie, pending, release } = await switchHeldAfterLoad(t, { ttl: 1 })
  // memcached's clock ticks once a second: ttl 1 ends within two.
  while (await observer.get(keyOf(idOf(cookie))) !== undefined) await new Promise((resolve) => setTimeout(resolve, 100))
  release.open()
  const response = await pending
  assert.equal(response.statusCode, 200)
  assert.deepEqual(response.json(), { userId: null, isNew: true })
  assert.equal(setCookieOf(response), CLEARED)
})

test('regenerate() of a session whose absoluteTtl ran out after the load starts an empty session and clears the cookie', async (t) => {
  const { cookie, pending, release } = await switchHeldAfterLoad(t, { absoluteTtl: 100 })
  // The plugin's clock moves on 100 s; memcached still holds the record.
  const realNow = Date.now.bind(Date)
  t.mock.method(Date, 'now', () => realNow() + 100_000)
  release.open()
  const response = await pending
  t.mock.restoreAll()
  assert.equal(response.statusCode, 200)
  assert.deepEqual(response.json(), { userId: null, isNew: true })
  assert.equal(setCookieOf(response), CLEARED)
  assert.equal(await observer.get(keyOf(idOf(cookie))), undefined, 'the expired record is deleted all the same')
})

test('regenerate() of a live session still moves its data (and the cookie to the new id)', async (t) => {
  const { app } = await setup(t)
  const cookie = cookieOf(await app.inject({ method: 'POST', url: '/login' }))
  const response = await app.inject({ method: 'POST', url: '/switch', cookies: { sid: cookie } })
  assert.deepEqual(response.json(), { userId: 'alice', isNew: true })
  const fresh = cookieOf(response)
  assert.notEqual(idOf(fresh), idOf(cookie))
  assert.deepEqual(await whoami(app, fresh), { userId: 'alice' })
  assert.deepEqual(await whoami(app, cookie), { userId: null })
})

test('absoluteTtl boundary: a session is dead at exactly absoluteTtl seconds, alive one second before', async (t) => {
  const absoluteTtl = 1000
  const { app } = await setup(t, { absoluteTtl })
  // A fixed clock: the boundary must not depend on when the second ticks.
  const now = Math.floor(Date.now() / 1000)
  t.mock.method(Date, 'now', () => now * 1000 + 500)
  const cases = [[absoluteTtl, null], [absoluteTtl - 1, 7], [absoluteTtl + 1, null]] as const
  for (const [age, views] of cases) {
    const id = Buffer.alloc(32, age % 251).toString('base64url')
    await observer.set(keyOf(id), `${now - age}::{"views":7}`, { ttl: 3600 })
    const peek = await app.inject({ url: '/peek', cookies: { sid: signCookie(id) } })
    assert.deepEqual(peek.json<{ views: number | null }>().views, views, `created ${age} s ago`)
  }
})
