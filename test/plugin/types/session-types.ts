// Compile-time checks of the public types (not run, only type-checked):
//   npx tsc -p test/plugin/types/tsconfig.json
// A line under `@ts-expect-error` must be a type error, or tsc fails.
import Fastify from 'fastify'
import memcachedSession, { MemoryStore } from 'fastify-memcached-session'

// What an app writes.
declare module 'fastify-memcached-session' {
  interface SessionData {
    userId: string
    views: number
  }
}

const app = Fastify()
void app.register(memcachedSession, { secret: 'x'.repeat(32), store: new MemoryStore() })

app.get('/', async (request) => {
  const views: number | undefined = request.session.get('views')
  request.session.set('views', (views ?? 0) + 1)
  request.session.set('userId', 'alice')
  request.session.delete('userId')
  const id: string = request.session.id
  const isNew: boolean = request.session.isNew
  request.session.cookie.maxAge = 3600
  const maxAge: number | undefined = request.session.cookie.maxAge
  await request.session.regenerate()
  await request.session.save()
  await request.session.reload()
  await request.session.destroy()
  request.session.touch()

  // @ts-expect-error views is a number
  request.session.set('views', 'three')
  // @ts-expect-error an undeclared key
  request.session.set('nope', 1)
  // @ts-expect-error an undeclared key
  request.session.get('nope')
  // @ts-expect-error get may return undefined
  const strict: number = request.session.get('views')
  // @ts-expect-error userId is a string
  const wrong: number | undefined = request.session.get('userId')
  // @ts-expect-error id is read-only
  request.session.id = 'mine'
  // @ts-expect-error maxAge is seconds, a number
  request.session.cookie.maxAge = '1h'
  return { views, id, isNew, maxAge, strict, wrong }
})

app.get('/off', { config: { session: false } }, async () => ({}))
// @ts-expect-error config.session is a boolean
app.get('/bad', { config: { session: 'no' } }, async () => ({}))

// @ts-expect-error secret is required
void app.register(memcachedSession, { store: new MemoryStore() })
// @ts-expect-error ttl is seconds, a number
void app.register(memcachedSession, { secret: 'x'.repeat(32), ttl: '1d' })
// @ts-expect-error sameSite takes lax, strict or none
void app.register(memcachedSession, { secret: 'x'.repeat(32), cookie: { sameSite: 'relaxed' } })
void app.register(memcachedSession, { secret: 'x'.repeat(32), store: new MemoryStore(), saveOnError: false, cacheControl: false })
// @ts-expect-error saveOnError is a boolean
void app.register(memcachedSession, { secret: 'x'.repeat(32), saveOnError: 'never' })
// @ts-expect-error cacheControl is a boolean (the header itself is the route's business)
void app.register(memcachedSession, { secret: 'x'.repeat(32), cacheControl: 'no-store' })
