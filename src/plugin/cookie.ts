import { Signer } from '@fastify/cookie'
import type { SessionConfig } from './options.js'

// 32 random bytes in base64url, then '.', then the HMAC-SHA256 in unpadded
// base64 (43 characters too): anything else is malformed before any crypto.
const ID_LENGTH = 43
const SIGNED_LENGTH = ID_LENGTH * 2 + 1
const ID = /^[A-Za-z0-9_-]{43}$/
const EXPIRED = '; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT'
/** Verified cookie values remembered, so a session's later requests skip the HMAC. */
const VERIFIED_CACHE_SIZE = 10_000

/** The outcome of reading a session cookie. */
export interface CookieId {
  /** The verified session id. */
  id: string
  /** Signed by an older secret: re-issue it signed by the newest. */
  renew: boolean
}

/**
 * Why a cookie was refused: `malformed` (not our format, perhaps another
 * app's cookie of the same name) or `forged` (well formed, but no secret
 * signed it: tampered with, or signed by a secret no longer configured).
 */
export type CookieRejection = 'malformed' | 'forged'

/**
 * The raw value of cookie `name` in a `Cookie` header, without parsing the
 * other cookies; `undefined` when absent.
 */
export function readCookie (header: string, name: string): string | undefined {
  let from = 0
  for (;;) {
    const at = header.indexOf(name, from)
    if (at < 0) return undefined
    from = at + name.length
    const before = at === 0 ? ';' : header[at - 1]
    if ((before === ';' || before === ' ' || before === '\t') && header[from] === '=') {
      const end = header.indexOf(';', from)
      const value = header.slice(from + 1, end < 0 ? header.length : end).trim()
      // Some clients percent-encode cookie values; ours never need it.
      return value.includes('%') ? safeDecode(value) : value
    }
  }
}

function safeDecode (value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** Signs ids and writes `Set-Cookie` values for one plugin registration. */
export class SessionCookies {
  private readonly signer: Signer
  private readonly name: string
  private readonly attributes: string
  private readonly secure: boolean | 'auto'
  // Only values that verified are kept (forged ones never enter, so they
  // cannot evict real ones), keyed by the whole signed value: a hit is the
  // same input, hence the same HMAC result. Oldest entry out first.
  private readonly verified = new Map<string, Readonly<CookieId>>()

  constructor (config: SessionConfig) {
    this.signer = new Signer(config.secrets, 'sha256')
    this.name = config.cookieName
    this.secure = config.cookie.secure
    // Everything but Max-Age and Secure is the same for every response.
    const { path, domain, httpOnly, sameSite, partitioned } = config.cookie
    this.attributes = `; Path=${path}` +
      (domain === undefined ? '' : `; Domain=${domain}`) +
      (httpOnly ? '; HttpOnly' : '') +
      `; SameSite=${sameSite[0].toUpperCase()}${sameSite.slice(1)}` +
      (partitioned ? '; Partitioned' : '')
  }

  /**
   * Verifies a cookie value. `'malformed'` when it is not `<id>.<signature>`
   * (no HMAC is computed), `'forged'` when the signature does not match any
   * secret: either way the caller starts a fresh session. The result is
   * shared and frozen: the last {@link VERIFIED_CACHE_SIZE} valid values are
   * remembered, so a returning session costs no HMAC.
   */
  verify (value: string): CookieId | CookieRejection {
    if (value.length !== SIGNED_LENGTH || value[ID_LENGTH] !== '.') return 'malformed'
    const id = value.slice(0, ID_LENGTH)
    if (!ID.test(id)) return 'malformed'
    const known = this.verified.get(value)
    if (known !== undefined) return known
    const result = this.signer.unsign(value)
    if (!result.valid) return 'forged'
    const cookie = Object.freeze({ id, renew: result.renew })
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string)
    this.verified.set(value, cookie)
    return cookie
  }

  /** A `Set-Cookie` value carrying the signed id; `maxAge` in seconds. */
  issue (id: string, maxAge: number | undefined, https: boolean): string {
    const age = maxAge === undefined ? '' : `; Max-Age=${maxAge}`
    return `${this.name}=${this.signer.sign(id)}${age}${this.attributes}${this.secureFlag(https)}`
  }

  /** A `Set-Cookie` value that makes the browser drop the cookie. */
  clear (https: boolean): string {
    return `${this.name}=${EXPIRED}${this.attributes}${this.secureFlag(https)}`
  }

  private secureFlag (https: boolean): string {
    return this.secure === true || (this.secure === 'auto' && https) ? '; Secure' : ''
  }
}
