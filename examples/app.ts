// A small web app on fastify-memcached-session: log in (regenerate), count
// (a session value), log out (destroy). Run it with `npm run example` and
// open http://127.0.0.1:3000/ in a browser: plain HTML forms, no script.
//
// Browsers get HTML (their Accept header names text/html); anything else gets
// JSON, so curl works as an API client:
//
//   curl -c jar -b jar -X POST localhost:3000/login -H 'content-type: application/json' -d '{"user":"alice"}'
//   curl -c jar -b jar -X POST localhost:3000/counter
//   curl -c jar -b jar localhost:3000/
//   curl -c jar -b jar -X POST localhost:3000/logout
//
// Environment: SESSION_SECRET (32+ characters; without it a random one is
// used and every restart logs everybody out), MEMCACHED_SERVERS
// (comma-separated host:port; without it the app starts its own memcached),
// PORT (default 3000), SESSION_MAX_AGE (seconds: cookies that outlive the
// browser, like "remember me"; default none).
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import { MemoryStore, memcachedSession, type MemcachedSessionOptions } from '../src/index.js'
import { startLocalMemcached } from './local-memcached.js'
import { renderPage } from './page.js'

// Typed session data: `get('views')` is `number | undefined`, and setting a
// key not declared here is a compile error.
declare module '../src/index.js' {
  interface SessionData {
    userId: string
    views: number
  }
}

const MAX_NAME_LENGTH = 64

async function backend (): Promise<{ options: Pick<MemcachedSessionOptions, 'servers' | 'store'>, stop: () => void }> {
  const configured = process.env.MEMCACHED_SERVERS
  if (configured !== undefined && configured !== '') {
    console.log(`sessions in memcached at ${configured}`)
    return { options: { servers: configured.split(',') }, stop: () => {} }
  }
  const local = await startLocalMemcached()
  if (local !== undefined) {
    console.log(`sessions in a memcached started for this example at ${local.address}`)
    return { options: { servers: [local.address] }, stop: local.stop }
  }
  console.log('memcached is not installed: falling back to MemoryStore (sessions vanish on restart)')
  const store = new MemoryStore()
  return { options: { store }, stop: () => { void store.close() } }
}

function secret (): string {
  const fromEnv = process.env.SESSION_SECRET
  if (fromEnv !== undefined && fromEnv.length >= 32) return fromEnv
  console.log('SESSION_SECRET is unset or shorter than 32 characters: using a random secret, so a restart logs everybody out')
  return randomBytes(32).toString('base64url')
}

/** `cookie.maxAge` from SESSION_MAX_AGE, seconds; undefined for a browser-session cookie. */
function cookieMaxAge (): number | undefined {
  const text = process.env.SESSION_MAX_AGE
  if (text === undefined || text === '') return undefined
  const seconds = Number(text)
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw new TypeError(`SESSION_MAX_AGE must be a positive whole number of seconds, got ${JSON.stringify(text)}`)
  return seconds
}

/** A browser navigating (Accept names text/html) gets pages; every other client gets JSON. */
function wantsHtml (request: FastifyRequest): boolean {
  return request.headers.accept?.includes('text/html') ?? false
}

/** Sends the browser to a page with a GET (303 See Other: after a form post, Back and reload never repost it). */
async function goTo (reply: FastifyReply, page: '/' | '/login'): Promise<FastifyReply> {
  return await reply.code(303).header('location', page).send()
}

async function main (): Promise<void> {
  const store = await backend()
  const app = Fastify({ logger: { level: 'info' } })
  // HTML forms post application/x-www-form-urlencoded; Fastify parses only JSON by itself.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  const maxAge = cookieMaxAge()
  await app.register(memcachedSession, { secret: secret(), ...store.options, ...(maxAge === undefined ? {} : { cookie: { maxAge } }) })

  // Two pages, as most sites have them: `/` for a logged-in user, `/login`
  // for everybody else; each sends the other kind of visitor to the other.
  app.get('/', async (request, reply) => {
    const user = request.session.get('userId')
    const views = request.session.get('views') ?? 0
    if (!wantsHtml(request)) return { user: user ?? null, views }
    if (user === undefined) return await goTo(reply, '/login')
    return await reply.type('text/html; charset=utf-8').send(renderPage({ user, views }))
  })

  app.get('/login', async (request, reply) => {
    if (request.session.get('userId') !== undefined) return await goTo(reply, '/')
    if (!wantsHtml(request)) return { user: null, views: 0 }
    return await reply.type('text/html; charset=utf-8').send(renderPage({ user: undefined, views: 0 }))
  })

  app.post<{ Body: { user?: unknown } | undefined }>('/login', async (request, reply) => {
    const user = request.body?.user
    if (typeof user !== 'string' || user.trim() === '' || user.length > MAX_NAME_LENGTH) {
      const error = `the name must be 1 to ${MAX_NAME_LENGTH} characters`
      if (!wantsHtml(request)) return await reply.code(400).send({ error: `body must be {"user": "<name>"}: ${error}` })
      return await reply.code(400).type('text/html; charset=utf-8').send(renderPage({ user: undefined, views: 0, notice: error }))
    }
    // A new id at login: an id planted in the browser before is worthless now.
    await request.session.regenerate()
    request.session.set('userId', user.trim())
    return wantsHtml(request) ? await goTo(reply, '/') : { user: user.trim() }
  })

  app.post('/counter', async (request, reply) => {
    // Counting is for logged-in users. Refusing the rest also means a form
    // posted from another site, which carries no cookie (SameSite=Lax),
    // changes nothing and sets no cookie.
    if (request.session.get('userId') === undefined) {
      return wantsHtml(request) ? await goTo(reply, '/login') : await reply.code(401).send({ error: 'log in first' })
    }
    const views = (request.session.get('views') ?? 0) + 1
    request.session.set('views', views)
    return wantsHtml(request) ? await goTo(reply, '/') : { views }
  })

  app.post('/logout', async (request, reply) => {
    // Deletes the data in memcached: the old cookie is dead even if stolen.
    await request.session.destroy()
    return wantsHtml(request) ? await goTo(reply, '/login') : { user: null }
  })

  app.get('/health', { config: { session: false } }, async () => ({ ok: true }))

  const shutdown = (): void => {
    void app.close().finally(() => { store.stop(); process.exit(0) })
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
