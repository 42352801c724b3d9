import { createHash } from 'node:crypto'
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
  /** {@link idHash} of the id, computed once per verified value. */
  hash: string
  /** Signed by an older secret: re-issue it signed by the newest. */
  renew: boolean
}

/**
 * sha256 of a session id, hex: the tail of its store key, and what logs and
 * traces show instead of the id.
 */
export function idHash (id: string): string {
  return createHash('sha256').update(id).digest('hex')
}

/**
 * Why a cookie was refused: `malformed` (not our format, perhaps another
 * app's cookie of the same name) or `forged` (well formed, but no secret
 * signed it: tampered with, or signed by a secret no longer configured).
 */
export type CookieRejection = 'malformed' | 'forged'

const SEMICOLON = 0x3b
const EQUALS = 0x3d

/** SP or HTAB: the only whitespace RFC 6265 and the `cookie` package trim. */
function isBlank (code: number): boolean {
  return code === 0x20 || code === 0x09
}

/**
 * The value of cookie `name` (an RFC 7230 token) in a `Cookie` header, or
 * `undefined` when absent, without parsing the other cookies. It gives what
 * `cookie.parse(header)[name]` gives (the parser `@fastify/cookie` uses): the
 * header is split at `;`, a pair's name and value are trimmed of SP and HTAB
 * only, the first pair of that name wins, and a value with `%` is
 * URI-decoded when it decodes. So a name counts only at the start of the
 * header or after `;` (RFC 6265 section 4.2.1): in `lang=en sid=A; sid=B`,
 * `sid=A` is part of the value of `lang` and the answer is `B`. Never throws.
 */
export function readCookie (header: string, name: string): string | undefined {
  for (let at = header.indexOf(name); at >= 0; at = header.indexOf(name, at + name.length)) {
    // A token holds no blank, `;` or `=`, so an occurrence that fails these
    // checks cannot overlap one that passes: skipping past it is safe.
    if (!startsPair(header, at)) continue
    let equals = at + name.length
    while (isBlank(header.charCodeAt(equals))) equals++
    if (header.charCodeAt(equals) !== EQUALS) continue
    const end = header.indexOf(';', equals + 1)
    return decode(trimBlanks(header, equals + 1, end < 0 ? header.length : end))
  }
  return undefined
}

/** Whether only blanks stand between the start of the header or a `;` and `at`. */
function startsPair (header: string, at: number): boolean {
  let before = at - 1
  while (before >= 0 && isBlank(header.charCodeAt(before))) before--
  return before < 0 || header.charCodeAt(before) === SEMICOLON
}

function trimBlanks (header: string, start: number, end: number): string {
  while (start < end && isBlank(header.charCodeAt(start))) start++
  while (end > start && isBlank(header.charCodeAt(end - 1))) end--
  return header.slice(start, end)
}

// As the `cookie` package: a value that does not decode is kept as sent.
function decode (value: string): string {
  if (!value.includes('%')) return value
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/**
 * Signs ids and writes `Set-Cookie` values for one plugin registration. The
 * HMAC covers `<name>=<id>`, the pair as the browser sends it, so a cookie is
 * refused under any other name: with one secret shared by two registrations,
 * `admin_sid=<value issued as sid>` does not verify. (A token name holds no
 * `=` and an id holds none either, so the signed text parses one way only.)
 */
export class SessionCookies {
  private readonly signer: Signer
  private readonly name: string
  /** `<name>=`, prepended to the id before signing and verifying. */
  private readonly signedPrefix: string
  private readonly attributes: string
  private readonly secure: boolean | 'auto'
  // Only values that verified are kept (forged ones never enter, so they
  // cannot evict real ones), keyed by the value: the cache is this object's,
  // so its cookie name is fixed, and a hit is the same name and value, hence
  // the same HMAC result. Oldest entry out first.
  private readonly verified = new Map<string, Readonly<CookieId>>()

  constructor (config: SessionConfig) {
    this.signer = new Signer(config.secrets, 'sha256')
    this.name = config.cookieName
    this.signedPrefix = `${config.cookieName}=`
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
   * secret for this cookie name: either way the caller starts a fresh
   * session. The result is shared and frozen: the last
   * {@link VERIFIED_CACHE_SIZE} valid values are remembered, so a returning
   * session costs no HMAC and no hash of its id.
   */
  verify (value: string): CookieId | CookieRejection {
    // A hit passed every check below when it entered.
    const known = this.verified.get(value)
    if (known !== undefined) return known
    if (value.length !== SIGNED_LENGTH || value[ID_LENGTH] !== '.') return 'malformed'
    const id = value.slice(0, ID_LENGTH)
    if (!ID.test(id)) return 'malformed'
    const result = this.signer.unsign(this.signedPrefix + value)
    if (!result.valid) return 'forged'
    const cookie = Object.freeze({ id, hash: idHash(id), renew: result.renew })
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string)
    this.verified.set(value, cookie)
    return cookie
  }

  /** A `Set-Cookie` value carrying the signed id; `maxAge` in seconds. */
  issue (id: string, maxAge: number | undefined, https: boolean): string {
    const age = maxAge === undefined ? '' : `; Max-Age=${maxAge}`
    // sign() returns `<name>=<id>.<signature>`: the pair, ready to send.
    return `${this.signer.sign(this.signedPrefix + id)}${age}${this.attributes}${this.secureFlag(https)}`
  }

  /** A `Set-Cookie` value that makes the browser drop the cookie. */
  clear (https: boolean): string {
    return `${this.name}=${EXPIRED}${this.attributes}${this.secureFlag(https)}`
  }

  private secureFlag (https: boolean): string {
    return this.secure === true || (this.secure === 'auto' && https) ? '; Secure' : ''
  }
}
