// Compile-time check of the published ES module types: the default import is
// the plugin itself, resolved through package.json "exports" to esm/index.d.mts.
import Fastify from 'fastify'
import memcachedSession, { MemcachedClient, MemoryStore, memcachedSession as named } from 'fastify-memcached-session'

const app = Fastify()
await app.register(memcachedSession, { secret: 'x'.repeat(32), store: new MemoryStore() })
await app.register(named, { secret: 'x'.repeat(32), client: new MemcachedClient() })
// @ts-expect-error: a secret is required
await app.register(memcachedSession, {})
