/**
 * The stamped copies of a replicated session and the version token that
 * checks every replica at once: pure encoding, no I/O.
 */

// Replicated values carry a stamp: `@<generation>.<tag>.<expires>@<record>`.
// The generation counts writes of the session, the tag (64 random bits) tells
// apart two writes of one generation, `expires` (Unix seconds, 0 = never) is
// the expiry the writer set, so a repair never makes a copy outlive it. Stamps
// are totally ordered (generation, then tag) and a copy only ever moves up.
// A destroyed session leaves a tombstone that beats every stamp, so that a
// stale copy on a replica that missed the destroy can never bring it back.
export const TOMBSTONE = '@dead'
const HEADER = /^@([1-9]\d{0,15})\.([0-9a-f]{16})\.(\d{1,12})@/
export const AT = 0x40
const U64 = (1n << 64n) - 1n
const SLOT = 0xffffn

export interface Stamp { gen: number, tag: bigint }
/** What a value written by a single-copy store (or by hand) compares as: below every stamp. */
export const LEGACY: Stamp = { gen: 0, tag: 0n }

export type Copy =
  | { kind: 'missing' }
  | { kind: 'error', error: unknown }
  | { kind: 'dead', cas: bigint }
  | { kind: 'live', stamp: Stamp, expires: number, raw: string, record: string, cas: bigint }

export type Live = Extract<Copy, { kind: 'live' }>
export function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}

export function compare (a: Stamp, b: Stamp): number {
  if (a.gen !== b.gen) return a.gen - b.gen
  return a.tag === b.tag ? 0 : a.tag > b.tag ? 1 : -1
}

export function parseCopy (value: string, cas: bigint): Copy {
  if (value.charCodeAt(0) !== AT) return { kind: 'live', stamp: LEGACY, expires: -1, raw: value, record: value, cas }
  if (value === TOMBSTONE) return { kind: 'dead', cas }
  const header = HEADER.exec(value)
  const gen = Number(header?.[1])
  // Not a stamp of ours: handed on as is, and the plugin ignores it as foreign.
  if (header === null || !Number.isSafeInteger(gen)) return { kind: 'live', stamp: LEGACY, expires: -1, raw: value, record: value, cas }
  const stamp = { gen, tag: BigInt(`0x${header[2] as string}`) }
  return { kind: 'live', stamp, expires: Number(header[3]), raw: value, record: value.slice(header[0].length), cas }
}

export function encodeCopy (stamp: Stamp, expires: number, record: string): string {
  return `@${stamp.gen}.${stamp.tag.toString(16).padStart(16, '0')}.${expires}@${record}`
}

// The version token of a replicated record: the stamp (tag in bits 0-63,
// generation in 64-127), then, 80 bits each, the server slot + 1 and the
// server's own CAS unique of every replica that held exactly this stamp at
// load. With them a save is one `cas` per replica, no re-read: each server
// has its own CAS uniques, so one bigint alone could not check them all.
export function encodeVersion (stamp: Stamp, uniques: ReadonlyArray<readonly [number, bigint]>): bigint {
  let version = stamp.tag | (BigInt(stamp.gen) << 64n)
  let shift = 128n
  for (const [slot, cas] of uniques) {
    version |= (BigInt(slot + 1) | ((cas & U64) << 16n)) << shift
    shift += 80n
  }
  return version
}

export function decodeVersion (version: bigint): { stamp: Stamp, uniques: Map<number, bigint> } {
  const stamp = { gen: Number((version >> 64n) & U64), tag: version & U64 }
  const uniques = new Map<number, bigint>()
  for (let rest = version >> 128n; rest > 0n; rest >>= 80n) {
    uniques.set(Number(rest & SLOT) - 1, (rest >> 16n) & U64)
  }
  return { stamp, uniques }
}

export function freshest (copies: Copy[]): Live | undefined {
  let best: Live | undefined
  for (const copy of copies) {
    if (copy.kind === 'live' && (best === undefined || compare(copy.stamp, best.stamp) > 0)) best = copy
  }
  return best
}

/** Relative ttl seconds to the absolute expiry stored in the stamp; 0 never expires. */
export function expiry (ttl: number): number {
  return ttl === 0 ? 0 : nowSeconds() + ttl
}
