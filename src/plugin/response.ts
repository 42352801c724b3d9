import type { FastifyReply, FastifyRequest } from 'fastify'
import type { SessionCookies } from './cookie.js'
import type { SessionConfig } from './options.js'
import { isNew, isStored, nowSeconds, type SessionState } from './state.js'

const PRIVATE = 'private, no-store'

/** Directives that let a shared cache (CDN, proxy) store a response. */
function sharedCacheable (header: string | number | string[]): boolean {
  const text = Array.isArray(header) ? header.join(',') : String(header)
  return text.split(',').some((directive) => {
    const name = directive.split('=', 1)[0]?.trim().toLowerCase()
    return name === 'public' || name === 's-maxage'
  })
}

/**
 * The session's mark on a response: the `Set-Cookie` the browser needs, and
 * a `Cache-Control` that keeps the response out of every cache it must not
 * be in.
 */
export class ResponseHeaders {
  private readonly config: SessionConfig
  private readonly cookies: SessionCookies
  /** `METHOD url` of routes already warned about a shared-cacheable response with the cookie. */
  private readonly warned = new Set<string>()

  constructor (config: SessionConfig, cookies: SessionCookies) {
    this.config = config
    this.cookies = cookies
  }

  apply (state: SessionState, request: FastifyRequest, reply: FastifyReply): void {
    const cookie = this.cookieHeader(state, request.protocol === 'https')
    if (cookie !== undefined) reply.header('set-cookie', cookie)
    this.cacheControl(state, request, reply, cookie !== undefined)
  }

  /**
   * After the request's store work failed: the cookie stays as the browser
   * has it, and Cache-Control follows the same rules as for any response.
   */
  protect (state: SessionState, request: FastifyRequest, reply: FastifyReply): void {
    this.cacheControl(state, request, reply, false)
  }

  /** The `Set-Cookie` value, or `undefined` when the browser's cookie is right as it is. */
  private cookieHeader (state: SessionState, https: boolean): string | undefined {
    if (!isStored(state) || state.id === undefined) {
      return state.origin === 'replaced' ? this.cookies.clear(https) : undefined
    }
    const maxAge = state.maxAge ?? this.config.cookie.maxAge
    // A Max-Age cookie moves with the record's expiry: on every response
    // under rolling, and whenever the record was written or touched.
    const renewBrowser = maxAge !== undefined && (this.config.rolling || state.phase === 'saved' || state.touchRequested)
    const needed = isNew(state) || state.origin === 'resign' || state.maxAgeSet || renewBrowser
    return needed ? this.cookies.issue(state.id, this.cookieMaxAge(maxAge, state.createdAt), https) : undefined
  }

  // A response that sets or clears the cookie is never stored by a shared
  // cache (it would hand one user's session to others); a response to a
  // request that carried a live session is not stored at all, so that the
  // Back button after logout cannot show a logged-in page from the browser's
  // cache. A route's own Cache-Control is kept, except one that lets a
  // shared cache store the cookie.
  private cacheControl (state: SessionState, request: FastifyRequest, reply: FastifyReply, setsCookie: boolean): void {
    const own = reply.getHeader('cache-control')
    const personal = this.config.cacheControl && state.carried
    if (own === undefined) {
      if (setsCookie || personal) reply.header('cache-control', personal ? PRIVATE : 'no-store')
      return
    }
    if (!setsCookie || !sharedCacheable(own)) return
    reply.header('cache-control', PRIVATE)
    const route = `${request.method} ${request.routeOptions.url ?? '(no route)'}`
    if (this.warned.has(route)) return
    this.warned.add(route)
    request.log.warn({ route, cacheControl: own }, `fastify-memcached-session: route ${route} sent a shared-cacheable Cache-Control with the session cookie; replaced by "${PRIVATE}" (warned once per route)`)
  }

  /** A cookie outliving the absolute lifetime would only carry a dead id. */
  private cookieMaxAge (maxAge: number | undefined, createdAt: number): number | undefined {
    if (maxAge === undefined) return undefined
    return Math.max(0, Math.min(maxAge, createdAt + this.config.absoluteTtl - nowSeconds()))
  }
}
