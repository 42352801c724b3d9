// The connect store as express-session and @fastify/session drive it: what
// their base classes need of it, exact expiry over memcached's whole seconds,
// callbacks outside the promise chain, and a process that exits once the app
// closes the store. Against real memcached.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { createRequire } from 'node:module'
import { connectStore, type ConnectSessionData, type StoredConnectSession } from '../../src/plugin/connect-store.js'
import { keyOf, sleep, useMemcached } from './helpers.js'

// express-session and @fastify/session are loaded untyped, as in interop.test.ts.
const load = createRequire(__filename)
type StoreClass = abstract new () => object
const expressSession = load('express-session') as { Store: StoreClass }
const fastifySession = load('@fastify/session') as { Store: StoreClass }

const memcached = useMemcached()

/** Every property name along the prototype chain of `prototype`, up to (not including) Object.prototype. */
function chainNames (prototype: object | null): Set<string> {
  const names = new Set<string>()
  for (let at = prototype; at !== null && at !== Object.prototype; at = Object.getPrototypeOf(at) as object | null) {
    for (const name of Object.getOwnPropertyNames(at)) names.add(name)
  }
  return names
}

function callback<T> (call: (done: (error: unknown, result?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    call((error, result) => { if (error === null || error === undefined) resolve(result); else reject(error) })
  })
}

function inMs (ms: number): Date {
  return new Date(Date.now() + ms)
}

// The store's own interface: these override the base's on purpose.
const STORE_METHODS = new Set(['constructor', 'get', 'set', 'touch', 'destroy'])

describe('no member of the store shadows one of its base class', () => {
  const bases: Array<[string, StoreClass]> = [
    ['EventEmitter', EventEmitter],
    ['express-session Store', expressSession.Store],
    ['@fastify/session Store', fastifySession.Store]
  ]
  for (const [label, Base] of bases) {
    test(`${label}: neither the prototype nor an instance of the store redefines a base member`, () => {
      const Store = connectStore(Base)
      // What the base defines: its prototype chain (EventEmitter's included)
      // and what its constructor puts on an instance (@fastify/session: store).
      const Parent = Base as new () => object
      const baseNames = chainNames(Base.prototype as object)
      for (const name of Object.getOwnPropertyNames(new Parent())) baseNames.add(name)
      assert.ok(baseNames.has('emit') && baseNames.has('on'), 'EventEmitter\'s names are listed')
      if (Base === expressSession.Store) for (const name of ['load', 'createSession', 'regenerate']) assert.ok(baseNames.has(name), name)
      if (Base === fastifySession.Store) assert.ok(baseNames.has('store'))

      const own = Object.getOwnPropertyNames(Store.prototype).filter((name) => !STORE_METHODS.has(name))
      const store = new Store({ client: memcached.client })
      const added = Object.getOwnPropertyNames(store).filter((name) => !Object.hasOwn(new Parent(), name))
      for (const name of [...own, ...added]) assert.ok(!baseNames.has(name), `${name} shadows ${label}'s ${name}`)
      // The base's own instance state is left as its constructor made it.
      if (Base === fastifySession.Store) assert.ok((store as unknown as { store: unknown }).store instanceof Map)
    })
  }

  // A load that never calls back would hang the suite: the timeout turns it into a failure.
  test('store.load(sid, cb) calls back (express-session\'s Store.prototype.load), with the session or nothing', { timeout: 30_000 }, async () => {
    const Store = connectStore(expressSession.Store)
    const store = new Store({ client: memcached.client, prefix: 'load:' }) as InstanceType<typeof Store> & {
      load (sid: string, done: (error: unknown, session?: { user?: string }) => void): void
    }
    await store.set('loaded', { cookie: { expires: inMs(60_000), originalMaxAge: 60_000 }, user: 'alice' } as ConnectSessionData)
    const found = await callback<{ user?: string }>((done) => { store.load('loaded', done) })
    assert.equal(found?.user, 'alice')
    assert.equal(await callback((done) => { store.load('never-stored', done) }), undefined)
  })

  test('connectStore(@fastify/session Store) sets, gets, touches and destroys despite the base\'s own `store` map', async () => {
    const store = new (connectStore(fastifySession.Store))({ client: memcached.client, prefix: 'fbase:' })
    const session = { cookie: { expires: inMs(60_000) }, user: 'bob' }
    await callback((done) => { store.set('f', session, done) })
    assert.equal((await callback<ConnectSessionData | null>((done) => { store.get('f', done) }) as StoredConnectSession | null)?.user, 'bob')
    await callback((done) => { store.touch('f', session, done) })
    await callback((done) => { store.destroy('f', done) })
    assert.equal(await store.get('f'), null)
  })
})

describe('expiry: get returns null once cookie.expires has passed, touch moves the deadline', () => {
  const Store = connectStore()

  test('get returns null once the cookie has expired, while memcached still holds the item', async () => {
    const store = new Store({ client: memcached.client, prefix: 'exp:' })
    // Stored by hand with a long memcached TTL: only the store's own check can refuse it.
    await memcached.client.set(keyOf('past', 'exp:'), JSON.stringify({ cookie: { expires: new Date(Date.now() - 1).toISOString() }, user: 'x' }), { ttl: 60 })
    assert.equal(await store.get('past'), null)
    assert.equal(await callback((done) => { store.get('past', done) }), null)
    assert.ok(await memcached.client.get(keyOf('past', 'exp:')) !== undefined)
  })

  test('a session with a 5 ms max age is gone once those 5 ms have passed', async () => {
    const store = new Store({ client: memcached.client, prefix: 'exp:' })
    const expires = inMs(5)
    await store.set('short', { cookie: { expires } })
    while (Date.now() <= expires.getTime()) await sleep(2)
    assert.equal(await store.get('short'), null)
  })

  test('a session is readable until its cookie expires: memcached\'s whole-second clock never cuts it off early', async () => {
    const store = new Store({ client: memcached.client, prefix: 'exp:' })
    // memcached's clock ticks once a second, so an item given ceil(ms / 1000)
    // seconds lives between that minus one and that: with deadlines 1.9 s
    // away, set at ten points spread over a second, most would vanish early.
    const sessions: Array<{ sid: string, expires: Date }> = []
    let setting = true
    const sets = (async () => {
      for (let i = 0; i < 10; i++) {
        const sid = `edge-${i}`
        const expires = inMs(1900)
        await store.set(sid, { cookie: { expires }, sid })
        sessions.push({ sid, expires })
        await sleep(100)
      }
      setting = false
    })()
    let reads = 0
    for (;;) {
      const pending = sessions.filter(({ expires }) => Date.now() < expires.getTime())
      if (!setting && pending.length === 0) break
      const results = await Promise.all(pending.map(async ({ sid }) => await store.get(sid)))
      const finished = Date.now()
      pending.forEach(({ sid, expires }, i) => {
        // A read that completed before the deadline was served before it.
        if (finished < expires.getTime()) {
          assert.equal(results[i]?.sid, sid, `${sid} read ${expires.getTime() - finished} ms before its cookie expires`)
          reads++
        }
      })
      await sleep(20)
    }
    await sets
    assert.ok(reads > 0)
    for (const { sid } of sessions) assert.equal(await store.get(sid), null)
  })

  test('a touched session is not cut off at its old expiry; touch keeps the stored data', async () => {
    const store = new Store({ client: memcached.client, prefix: 'exp:' })
    const old = inMs(50)
    await store.set('touched', { cookie: { expires: old }, user: 'alice' })
    const renewed = inMs(60_000)
    // The session as this request loaded it; another request has since changed `user`.
    await store.set('touched', { cookie: { expires: old }, user: 'changed by another request' })
    await callback((done) => { store.touch('touched', { cookie: { expires: renewed }, user: 'alice' }, done) })
    while (Date.now() <= old.getTime()) await sleep(5)
    const found = await store.get('touched')
    assert.equal(found?.user, 'changed by another request')
    assert.equal(new Date(found?.cookie?.expires ?? 0).getTime(), renewed.getTime())
  })

  test('touch does not bring back a session whose cookie has expired, nor one that is gone', async () => {
    const store = new Store({ client: memcached.client, prefix: 'exp:' })
    await memcached.client.set(keyOf('lapsed', 'exp:'), JSON.stringify({ cookie: { expires: new Date(Date.now() - 1).toISOString() } }), { ttl: 60 })
    await store.touch('lapsed', { cookie: { expires: inMs(60_000) } })
    assert.equal(await store.get('lapsed'), null)
    await store.touch('absent', { cookie: { expires: inMs(60_000) } })
    assert.equal(await memcached.client.get(keyOf('absent', 'exp:')), undefined)
  })
})

/** Runs `code` (CommonJS) in a child node; resolves with its stdout lines and exit code. */
async function runChild (code: string): Promise<{ lines: string[], code: number | null }> {
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const [exitCode] = await once(child, 'exit') as [number | null]
  return { lines: out.trim().split('\n'), code: exitCode }
}

test('a callback that throws is an uncaught exception, not an unhandled rejection', async () => {
  const { lines, code } = await runChild(`
    const { connectStore } = require('fastify-memcached-session/connect-store')
    const Store = connectStore()
    const store = new Store({ servers: ['${memcached.server.address}'] })
    const dead = new Store({ servers: ['127.0.0.1:1'] })
    process.on('unhandledRejection', (error) => { console.log('unhandledRejection ' + error.message); next() })
    let next = () => {}
    process.on('uncaughtException', (error, origin) => { console.log(origin + ' ' + error.message); next() })
    const calls = [
      (cb) => store.set('s', { cookie: null }, cb),
      (cb) => store.get('s', cb),
      (cb) => store.touch('s', { cookie: null }, cb),
      (cb) => store.destroy('s', cb),
      (cb) => dead.get('s', cb),
    ]
    ;(async () => {
      for (const [i, call] of calls.entries()) {
        await new Promise((resolve) => { next = resolve; call(() => { throw new Error('thrown by callback ' + i) }) })
      }
      await Promise.all([store.close(), dead.close()])
    })()
  `)
  assert.deepEqual(lines, [0, 1, 2, 3, 4].map((i) => `uncaughtException thrown by callback ${i}`))
  assert.equal(code, 0)
})

// The examples of docs/operations.md, as a child process: register, serve one request that
// saves a session in memcached, close the app, print 'closed'. The process
// must then exit by itself; one still running 2 s later is stopped by its pid.
const FASTIFY_SESSION_APP = (closeStore: boolean): string => `
  const Fastify = require('fastify')
  const { connectStore } = require('fastify-memcached-session/connect-store')
  ;(async () => {
    const MemcachedSessionStore = connectStore()
    const store = new MemcachedSessionStore({ servers: [process.env.MEMCACHED] })
    const app = Fastify()
    ${closeStore ? 'app.addHook(\'onClose\', async () => { await store.close() })' : ''}
    await app.register(require('@fastify/cookie'))
    await app.register(require('@fastify/session'), { secret: 'x'.repeat(32), store, cookie: { secure: false } })
    app.get('/', async (request) => { request.session.set('views', 1); return { ok: true } })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const response = await fetch('http://127.0.0.1:' + app.server.address().port + '/')
    await response.text()
    console.log('saved ' + (response.status === 200 && response.headers.get('set-cookie') !== null))
    await app.close()
    console.log('closed')
  })()
`

const EXPRESS_APP = `
  const express = require('express')
  const session = require('express-session')
  const { MemcachedClient } = require('fastify-memcached-session')
  const { connectStore } = require('fastify-memcached-session/connect-store')
  const MemcachedSessionStore = connectStore(session.Store)
  const client = new MemcachedClient({ servers: [process.env.MEMCACHED] })
  const app = express()
  app.use(session({ secret: 'x'.repeat(32), store: new MemcachedSessionStore({ client }), resave: false, saveUninitialized: false }))
  app.get('/', (request, response) => { request.session.views = 1; response.json({ ok: true }) })
  const server = app.listen(0, '127.0.0.1', async () => {
    const response = await fetch('http://127.0.0.1:' + server.address().port + '/')
    await response.text()
    console.log('saved ' + (response.status === 200 && response.headers.get('set-cookie') !== null))
    process.kill(process.pid, 'SIGTERM')
  })
  process.once('SIGTERM', () => {
    server.close()
    client.close().then(() => { console.log('closed') })
  })
`

/** Whether the child running `code` exits within `ms` of printing 'closed'; a child that does not is stopped by its pid. */
async function exitsAfterClose (code: string, ms: number): Promise<{ saved: boolean, exited: boolean }> {
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MEMCACHED: memcached.server.address } })
  const exit = once(child, 'exit')
  let out = ''
  let timer: NodeJS.Timeout | undefined
  const closed = new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk
      if (out.includes('closed\n')) resolve()
    })
  })
  const exited = await Promise.race([
    exit.then(() => true),
    closed.then(async () => await new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ms, false) }))
  ])
  clearTimeout(timer)
  if (!exited && child.pid !== undefined) {
    process.kill(child.pid)
    await exit
  }
  return { saved: out.includes('saved true'), exited: exited && out.includes('closed\n') }
}

test('close() lets the process exit: the docs\' @fastify/session example, with the onClose hook, exits within 2 s of app.close()', async () => {
  assert.deepEqual(await exitsAfterClose(FASTIFY_SESSION_APP(true), 2000), { saved: true, exited: true })
  // Without the hook nothing closes the store, and the process stays up.
  assert.deepEqual(await exitsAfterClose(FASTIFY_SESSION_APP(false), 2000), { saved: true, exited: false })
})

test('close() lets the process exit: the docs\' express example exits within 2 s of closing the server and the client', async () => {
  assert.deepEqual(await exitsAfterClose(EXPRESS_APP, 2000), { saved: true, exited: true })
})
