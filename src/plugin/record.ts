import { SessionError } from './errors.js'

// The serialized form of a session in the store:
//   <createdAt seconds>:<cookie maxAge seconds, or empty>:<JSON data>
// The two numbers come first so a load can check the absolute lifetime, and
// a touch can compute its TTL, without parsing the JSON: a request that never
// reads its session never pays for JSON.parse.

/** Session data as stored: a JSON object of the app's keys. */
export type RecordData = Record<string, unknown>

/** A record split into its header and its still unparsed JSON. */
export interface DecodedRecord {
  /** Unix seconds when the session was created (for `absoluteTtl`). */
  createdAt: number
  /** Per-session cookie Max-Age, seconds, if one was set. */
  maxAge: number | undefined
  /** The data as JSON text; parse with {@link parseData}. */
  json: string
}

/**
 * Serializes a session record. Data that JSON cannot hold (nested past the
 * engine's stack, circular, a BigInt, a throwing `toJSON`) is a
 * `SESSION_INVALID_DATA` error, not the engine's raw `RangeError`.
 */
export function encodeRecord (createdAt: number, maxAge: number | undefined, data: RecordData): string {
  let json: string
  try {
    json = JSON.stringify(data)
  } catch (error) {
    throw new SessionError('SESSION_INVALID_DATA', 'the session data cannot be stored as JSON (nested too deeply, circular, or holding a BigInt); nothing was saved', error)
  }
  return `${createdAt}:${maxAge ?? ''}:${json}`
}

/** Splits a record; `undefined` when it is not one of ours (treated as missing). */
export function decodeRecord (value: string): DecodedRecord | undefined {
  const first = value.indexOf(':')
  const second = first < 0 ? -1 : value.indexOf(':', first + 1)
  if (second < 0) return undefined
  const createdAt = Number(value.slice(0, first))
  const maxAgeText = value.slice(first + 1, second)
  const maxAge = maxAgeText === '' ? undefined : Number(maxAgeText)
  if (first === 0 || !Number.isSafeInteger(createdAt)) return undefined
  if (maxAge !== undefined && !(Number.isSafeInteger(maxAge) && maxAge >= 0)) return undefined
  return { createdAt, maxAge, json: value.slice(second + 1) }
}

/**
 * Sets `data[key]` as an own property. Plain assignment of `__proto__` would
 * replace the object's prototype instead (letting a key chosen by a client
 * decide what every other key inherits) and the key would never be saved.
 */
export function setData (data: RecordData, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(data, key, { value, writable: true, enumerable: true, configurable: true })
  else data[key] = value
}

/** Parses the JSON part; `undefined` when it is not a JSON object. */
export function parseData (json: string): RecordData | undefined {
  let data: unknown
  try {
    data = JSON.parse(json)
  } catch {
    return undefined
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
  return data as RecordData
}
