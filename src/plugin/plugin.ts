import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import type { MemcachedClient } from '../protocol/client.js'
import { readCookie } from './cookie.js'
import { SessionManager } from './manager.js'
import { resolveOptions, type MemcachedSessionOptions } from './options.js'
import { STATE, type Session } from './session.js'
import { MemcachedStore } from './stores/memcached.js'
import type { SessionStore } from './stores/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The plugin's {@link MemcachedClient}, to cache with the same pipelined
     * connections as the sessions. Present when sessions live in memcached
     * (the `servers` or `client` option, or a `MemcachedStore` as `store`);
     * not decorated with any other store (`fastify.hasDecorator('memcached')`
     * tells). A client the plugin created is closed by the plugin on close:
     * do not close it yourself.
     */
    memcached: MemcachedClient
    /**
     * The store sessions live in. For readiness checks,
     * `await fastify.sessionStore.ping?.()` gives each backend's health and
     * round trip in ms.
     */
    sessionStore: SessionStore
  }
  interface FastifyRequest {
    /**
     * The request's session. `null` on routes registered with
     * `config: { session: false }`, which do no session work at all.
     */
    session: Session
  }
  interface FastifyContextConfig {
    /** `false` opts the route out of sessions: nothing is loaded or saved. */
    session?: boolean
  }
}

function createStore (options: MemcachedSessionOptions): { store: SessionStore, owned: boolean } {
  if (options.store !== undefined) return { store: options.store, owned: false }
  if (options.client !== undefined) {
    return { store: new MemcachedStore({ client: options.client, replicas: options.replicas, tombstoneTtl: options.ttl }), owned: false }
  }
  return { store: new MemcachedStore({ servers: options.servers, proxy: options.proxy, replicas: options.replicas, tombstoneTtl: options.ttl }), owned: true }
}

function checkStore (store: SessionStore): void {
  for (const method of ['get', 'add', 'cas', 'touch', 'delete'] as const) {
    if (typeof store[method] !== 'function') {
      throw new TypeError(`fastify-memcached-session: store must implement SessionStore (missing ${method}())`)
    }
  }
  if (store.getAndTouch !== undefined && typeof store.getAndTouch !== 'function') {
    throw new TypeError('fastify-memcached-session: store.getAndTouch must be a function when present')
  }
}

/** `done` called with no argument is "go on"; this only says so to the type checker. */
function continueWith (done: HookHandlerDoneFunction): () => void {
  return done
}

async function memcachedSessionPlugin (fastify: FastifyInstance, options: MemcachedSessionOptions): Promise<void> {
  const config = resolveOptions(options)
  const { store, owned } = createStore(options)
  checkStore(store)
  const manager = new SessionManager(config, store)
  const cookieName = config.cookieName

  fastify.decorateRequest<Session | null>('session', null)
  // An app that already has either decorator keeps its own.
  if (!fastify.hasDecorator('sessionStore')) fastify.decorate('sessionStore', store)
  if (store instanceof MemcachedStore && !fastify.hasDecorator('memcached')) fastify.decorate('memcached', store.client)
  fastify.addHook('onRequest', onRequestSession)
  fastify.addHook('onSend', onSendSession)
  // A client or store the app passed in is the app's to close.
  if (owned) fastify.addHook('onClose', closeStore)

  // Hooks take `done` rather than being async: the common request, with no
  // session cookie and an untouched session, then completes without a promise.
  function onRequestSession (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.routeOptions.config.session === false) {
      done()
      return
    }
    const header = request.headers.cookie
    const value = header === undefined ? undefined : readCookie(header, cookieName)
    if (value === undefined) {
      request.session = manager.fresh(request.log)
      done()
      return
    }
    const pending = manager.open(request, value)
    if (pending === undefined) done()
    else pending.then(continueWith(done), done)
  }

  function onSendSession (request: FastifyRequest, reply: FastifyReply, _payload: unknown, done: HookHandlerDoneFunction): void {
    const session = request.session as Session | null
    const pending = session === null ? undefined : manager.finish(session[STATE], request, reply)
    if (pending === undefined) done()
    else pending.then(continueWith(done), done)
  }

  async function closeStore (): Promise<void> {
    await store.close?.()
  }
}

/**
 * The Fastify plugin: `request.session` backed by memcached (or any
 * {@link SessionStore}). Register it once at the root:
 *
 * ```ts
 * await app.register(memcachedSession, { secret: process.env.SESSION_SECRET, servers: ['127.0.0.1:11211'] })
 * ```
 *
 * Options are validated at register time; see {@link MemcachedSessionOptions}.
 */
export const memcachedSession = fp(memcachedSessionPlugin, {
  fastify: '5.x',
  name: 'fastify-memcached-session'
})
