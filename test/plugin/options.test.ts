// Options are validated at register time, with messages naming the package.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { MemcachedClient, MemoryStore, memcachedSession, type MemcachedSessionOptions } from '../../src/index.js'
import { SECRET } from './helpers.js'

async function register (options: unknown): Promise<void> {
  const app = Fastify()
  try {
    await app.register(memcachedSession, options as MemcachedSessionOptions)
    await app.ready()
  } finally {
    await app.close()
  }
}

const store = new MemoryStore()

/** A store's methods as own properties, bound to it. */
function methodsOf (of: MemoryStore): Record<string, unknown> {
  return Object.fromEntries((['get', 'add', 'cas', 'touch', 'delete'] as const).map((name) => [name, of[name].bind(of)]))
}

const BAD: Array<[string, unknown, RegExp]> = [
  ['no options at all', undefined, /secret option is required/],
  ['no secret', { store }, /secret option is required/],
  ['short secret', { store, secret: 'too-short' }, /at least 32 characters/],
  ['short secret in a rotation list', { store, secret: [SECRET, 'short'] }, /at least 32 characters/],
  ['empty secret list', { store, secret: [] }, /must not be an empty array/],
  ['secret not a string', { store, secret: 12345 }, /at least 32 characters/],
  ['ttl zero', { store, secret: SECRET, ttl: 0 }, /ttl must be a positive integer/],
  ['ttl negative', { store, secret: SECRET, ttl: -5 }, /ttl must be a positive integer/],
  ['ttl fractional', { store, secret: SECRET, ttl: 1.5 }, /ttl must be a positive integer/],
  ['ttl as a string', { store, secret: SECRET, ttl: '3600' }, /ttl must be a positive integer/],
  ['absoluteTtl NaN', { store, secret: SECRET, absoluteTtl: Number.NaN }, /absoluteTtl must be a positive integer/],
  ['prefix with a space', { store, secret: SECRET, prefix: 'my app:' }, /prefix cannot start a memcached key.*whitespace/],
  ['prefix with a newline', { store, secret: SECRET, prefix: 'a\r\nflush_all\r\n' }, /prefix cannot start a memcached key.*whitespace or control/],
  ['prefix with a control character', { store, secret: SECRET, prefix: 'a\u0001' }, /control characters/],
  ['prefix with a C1 control character (NEL)', { store, secret: SECRET, prefix: 'sess\u0085:' }, /prefix cannot start a memcached key.*control characters/],
  ['prefix with a line separator', { store, secret: SECRET, prefix: 'sess\u2028:' }, /prefix cannot start a memcached key.*control characters/],
  ['prefix with a lone surrogate', { store, secret: SECRET, prefix: 'sess\ud800:' }, /prefix cannot start a memcached key.*lone surrogates/],
  ['prefix too long', { store, secret: SECRET, prefix: 'p'.repeat(187) }, /prefix cannot start a memcached key.*at most 250 bytes/],
  ['prefix too long in UTF-8', { store, secret: SECRET, prefix: 'é'.repeat(94) }, /prefix cannot start a memcached key.*at most 250 bytes/],
  ['saveOnError not a boolean', { store, secret: SECRET, saveOnError: 'no' }, /saveOnError must be a boolean/],
  ['cacheControl not a boolean', { store, secret: SECRET, cacheControl: 0 }, /cacheControl must be a boolean/],
  ['prefix not a string', { store, secret: SECRET, prefix: 42 }, /prefix must be a string/],
  ['cookie name with a space', { store, secret: SECRET, cookieName: 'my sid' }, /cookieName must be a valid cookie name/],
  ['cookie name with a semicolon', { store, secret: SECRET, cookieName: 'a;b' }, /cookieName must be a valid cookie name/],
  ['servers and client', { secret: SECRET, servers: ['127.0.0.1:1'], client: new MemcachedClient({ servers: ['127.0.0.1:1'] }) }, /only one of servers, client and store/],
  ['servers and store', { secret: SECRET, servers: ['127.0.0.1:1'], store }, /only one of servers, client and store/],
  ['empty servers', { secret: SECRET, servers: [] }, /servers must be a non-empty array/],
  ['replicas 0', { secret: SECRET, servers: ['127.0.0.1:1'], replicas: 0 }, /replicas must be a positive integer/],
  ['replicas 1.5', { secret: SECRET, servers: ['127.0.0.1:1'], replicas: 1.5 }, /replicas must be a positive integer/],
  ['replicas above the servers', { secret: SECRET, servers: ['127.0.0.1:1'], replicas: 2 }, /replicas \(2\) cannot exceed the number of servers \(1\)/],
  ['replicas with a store', { store, secret: SECRET, replicas: 1 }, /replicas applies to servers or client/],
  ['proxy not a boolean', { secret: SECRET, servers: ['127.0.0.1:1'], proxy: 'yes' }, /proxy must be a boolean/],
  ['proxy with a client', { secret: SECRET, client: new MemcachedClient({ servers: ['127.0.0.1:1'] }), proxy: true }, /proxy applies to servers; with client, create the MemcachedClient with proxy: true/],
  ['proxy with a store', { store, secret: SECRET, proxy: true }, /proxy applies to servers/],
  ['sameSite none without secure', { store, secret: SECRET, cookie: { sameSite: 'none' } }, /'none' requires cookie.secure: true/],
  ['bad sameSite', { store, secret: SECRET, cookie: { sameSite: 'loose' } }, /cookie.sameSite must be/],
  ['bad secure', { store, secret: SECRET, cookie: { secure: 'yes' } }, /cookie.secure must be/],
  ['path with a semicolon', { store, secret: SECRET, cookie: { path: '/a; Domain=evil' } }, /cookie.path must be/],
  ['cookie maxAge zero', { store, secret: SECRET, cookie: { maxAge: 0 } }, /cookie.maxAge must be a positive integer/],
  ['rolling not a boolean', { store, secret: SECRET, rolling: 'yes' }, /rolling must be a boolean/],
  ['store without cas', { secret: SECRET, store: { get: async () => undefined } }, /store must implement SessionStore \(missing add\(\)\)/],
  ['store with a getAndTouch that is not a function', { secret: SECRET, store: { ...methodsOf(store), getAndTouch: true } }, /store.getAndTouch must be a function/]
]

for (const [name, options, message] of BAD) {
  test(`rejected at register time: ${name}`, async () => {
    await assert.rejects(register(options), (error: Error) => {
      assert.match(error.message, /^fastify-memcached-session: /)
      assert.match(error.message, message)
      return true
    })
  })
}

test('accepted: the minimal options, a rotation list, every option spelled out', async () => {
  await register({ secret: SECRET, store })
  await register({ secret: [SECRET, SECRET.toUpperCase()], store })
  const client = new MemcachedClient({ servers: ['127.0.0.1:1'] })
  await register({
    secret: SECRET,
    client,
    replicas: 1,
    cookieName: '__Host-sid',
    cookie: { path: '/', httpOnly: true, secure: true, sameSite: 'none', partitioned: true, maxAge: 3600 },
    ttl: 60 * 86_400,
    absoluteTtl: 365 * 86_400,
    rolling: false,
    saveUninitialized: true,
    prefix: 'app:sess:',
    saveOnError: false,
    cacheControl: false
  })
  await register({ secret: SECRET, store, prefix: '' })
  await register({ secret: SECRET, store, prefix: 'sessé:' })
  await register({ secret: SECRET, store, prefix: 'p'.repeat(186) })
  await client.close()
  await store.close()
})

test('proxy: true reaches the client the plugin creates for servers', async () => {
  for (const proxy of [true, false, undefined]) {
    const app = Fastify()
    await app.register(memcachedSession, { secret: SECRET, servers: ['127.0.0.1:1'], proxy })
    await app.ready()
    assert.equal(app.memcached.proxy, proxy === true, `proxy: ${String(proxy)}`)
    await assert.rejects(app.memcached.stats(), proxy === true ? { code: 'MC_UNSUPPORTED' } : { code: 'MC_CONNECTION' })
    await app.close()
  }
})

test('MemoryStore and session.cookie.maxAge validate their input too', async () => {
  assert.throws(() => new MemoryStore({ maxBytes: 0 }), /^TypeError: fastify-memcached-session: MemoryStore maxBytes must be a positive integer/)
  assert.throws(() => new MemoryStore({ sweepInterval: 1.5 }), /sweepInterval must be a positive integer/)
  const memory = new MemoryStore()
  const app = Fastify()
  await app.register(memcachedSession, { secret: SECRET, store: memory })
  app.get('/', async (request) => {
    assert.throws(() => { request.session.cookie.maxAge = -1 }, /cookie.maxAge must be a positive integer/)
    return {}
  })
  assert.equal((await app.inject({ url: '/' })).statusCode, 200)
  await app.close()
  await memory.close()
})
