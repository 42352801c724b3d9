/**
 * Ketama consistent hashing, point for point the continuum libmemcached builds
 * with MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (`update_continuum` in
 * libmemcached/hosts.cc), so that a PHP, Python or C service on libmemcached
 * looks a key up on the same server as we do and both share the sessions.
 *
 * Each server gets `ketamaPoints()` points (160 when all weights are equal).
 * Point group i of a server is MD5(`host-i`) when its port is 11211, else
 * MD5(`host:port-i`); each 16-byte digest gives four points, bytes
 * [4x..4x+3] read as little-endian uint32 for x = 0..3. A key belongs to the
 * first point >= hashKey(key), wrapping past the last point to the first.
 *
 * The other clients must use the weighted continuum too: libmemcached builds
 * it with MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (php-memcached's
 * OPT_LIBKETAMA_COMPATIBLE, pylibmc's `ketama_weighted`) or as soon as one
 * weight is > 1; plain MEMCACHED_BEHAVIOR_KETAMA with all weights 1 builds a
 * different, 100-points-per-server continuum. They must also name the hosts
 * exactly as we do, since the names are hashed.
 */
import crypto from 'node:crypto'

const DEFAULT_PORT = 11211
/** MEMCACHED_POINTS_PER_SERVER_KETAMA */
const POINTS_PER_SERVER = 160
/** Points taken from one MD5 digest. */
const POINTS_PER_HASH = 4
/** libmemcached keeps weights in a uint32_t. */
const MAX_WEIGHT = 0xffff_ffff
const PREFIX = 'fastify-memcached-session: '

/** A server on the ring. */
export interface RingNode {
  /** `host:port`, unique on a ring. */
  readonly id: string
  /**
   * Host name or address exactly as the other libmemcached clients were given
   * it (IPv6 without brackets): it is hashed into the point names, so
   * `localhost` and `127.0.0.1` are different rings.
   */
  readonly host: string
  /** TCP port; 11211 is left out of the point names, as libmemcached does. */
  readonly port: number
  /** Relative share of the keys: a positive integer. */
  readonly weight: number
}

// crypto.hash (Node >= 20.12) skips the Hash object; measured ~25% faster per
// key than createHash on Node 20. Older Node 20 releases fall back.
const md5: (data: string) => Buffer = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('md5', data, 'buffer')
  : (data) => crypto.createHash('md5').update(data).digest()

/**
 * libmemcached's MD5 key hash (`hashkit_md5`): the first 4 bytes of MD5 of
 * the key's UTF-8 bytes, read as a little-endian uint32.
 *
 * @returns an integer in 0..2^32-1
 */
export function hashKey (key: string): number {
  return md5(key).readUInt32LE(0)
}

/**
 * How many continuum points libmemcached's weighted ketama gives one server:
 * `floor((float)(pct * 160 / 4 * (float)live_servers + 1e-10F)) * 4` with
 * `pct = (float)weight / (float)total_weight`, all in single precision.
 * Each step is rounded with Math.fround: the inputs of every step are floats,
 * so the double product or quotient rounded once to float is exactly what
 * the C float operation gives (for division, 53 >= 2 * 24 + 2 bits makes the
 * double rounding harmless). Plain double arithmetic differs, e.g. weights
 * 29 of 60 on 3 servers: 232 points in double, 228 in libmemcached.
 *
 * @param weight - the server's weight
 * @param totalWeight - sum of the weights of the live servers
 * @param liveServers - number of live servers on the ring
 * @returns a multiple of 4 (0 for a weight negligible next to the others)
 */
export function ketamaPoints (weight: number, totalWeight: number, liveServers: number): number {
  const f = Math.fround
  const pct = f(f(weight) / f(totalWeight))
  const scaled = f(f(f(pct * POINTS_PER_SERVER) / POINTS_PER_HASH) * f(liveServers))
  // The epsilon is kept verbatim; in float it can never lift a value over an integer.
  return Math.floor(f(scaled + f(0.0000000001))) * POINTS_PER_HASH
}

/**
 * Consistent hashing over memcached servers, identical to libmemcached's
 * weighted ketama: removing a server moves only the keys it held, and adding
 * it back restores the previous mapping exactly. Immutable: build a new ring
 * when the set of live servers changes.
 */
export class KetamaRing<T extends RingNode> {
  readonly #nodes: readonly T[]
  /** Point values, ascending. */
  readonly #values: Uint32Array
  /** Index in #nodes of the server owning the point at the same position. */
  readonly #owners: Uint32Array

  /**
   * Builds the continuum (a few ms for 100 servers).
   *
   * @param nodes - the live servers, in configuration order: on a tie between
   *   two servers' points the earlier one wins, as in libmemcached
   * @throws TypeError for a weight that is not an integer in 1..2^32-1, or a duplicate id
   */
  constructor (nodes: readonly T[]) {
    const ids = new Set<string>()
    for (const node of nodes) {
      if (!Number.isInteger(node.weight) || node.weight < 1 || node.weight > MAX_WEIGHT) {
        throw new TypeError(`${PREFIX}server ${node.id} has weight ${String(node.weight)}; a weight must be an integer from 1 to ${MAX_WEIGHT}`)
      }
      if (ids.has(node.id)) throw new TypeError(`${PREFIX}server ${node.id} is listed twice`)
      ids.add(node.id)
    }
    this.#nodes = [...nodes]
    const { values, owners } = buildContinuum(this.#nodes)
    this.#values = values
    this.#owners = owners
  }

  /** Number of servers on the ring. */
  get size (): number {
    return this.#nodes.length
  }

  /** The server a key maps to; undefined when the ring is empty. */
  get (key: string): T | undefined {
    if (this.#values.length === 0) return undefined
    return this.#nodes[this.#owners[this.#find(hashKey(key))]]
  }

  /**
   * Up to n distinct servers for a key (for replicas): the key's server
   * (`get(key)`), then the next distinct servers walking clockwise along the
   * continuum. With n >= size every server is returned.
   */
  getN (key: string, n: number): T[] {
    const wanted = Math.min(Math.floor(n), this.#nodes.length)
    const length = this.#values.length
    if (!(wanted > 0) || length === 0) return []
    const result: T[] = []
    const seen = new Uint8Array(this.#nodes.length)
    const start = this.#find(hashKey(key))
    for (let step = 0; step < length && result.length < wanted; step++) {
      const owner = this.#owners[(start + step) % length]
      if (seen[owner] === 0) {
        seen[owner] = 1
        result.push(this.#nodes[owner])
      }
    }
    // A weight tiny next to the others gets no point at all (libmemcached
    // gives it none either); such a server still exists, so it may hold a copy.
    for (let owner = 0; owner < this.#nodes.length && result.length < wanted; owner++) {
      if (seen[owner] === 0) result.push(this.#nodes[owner])
    }
    return result
  }

  /** Position of the first point >= hash, 0 past the last (libmemcached's dispatch_host). */
  #find (hash: number): number {
    const values = this.#values
    let low = 0
    let high = values.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (values[middle] < hash) low = middle + 1
      else high = middle
    }
    return low === values.length ? 0 : low
  }
}

function buildContinuum (nodes: readonly RingNode[]): { values: Uint32Array, owners: Uint32Array } {
  let totalWeight = 0
  for (const node of nodes) totalWeight += node.weight
  const counts = nodes.map((node) => ketamaPoints(node.weight, totalWeight, nodes.length))
  const length = counts.reduce((sum, count) => sum + count, 0)
  const rawValues = new Uint32Array(length)
  const rawOwners = new Uint32Array(length)
  let at = 0
  nodes.forEach((node, owner) => {
    const name = node.port === DEFAULT_PORT ? node.host : `${node.host}:${node.port}`
    for (let group = 0; group < counts[owner] / POINTS_PER_HASH; group++) {
      const digest = md5(`${name}-${group}`)
      for (let x = 0; x < POINTS_PER_HASH; x++) {
        rawValues[at] = digest.readUInt32LE(x * 4)
        rawOwners[at] = owner
        at++
      }
    }
  })
  // Equal values are ordered by server index: libmemcached-awesome's
  // continuum_item_cmp compares the index explicitly, and older libmemcached
  // relies on glibc qsort, a merge sort that keeps the insertion order.
  const order = Array.from({ length }, (_, index) => index)
  order.sort((a, b) => rawValues[a] - rawValues[b] || rawOwners[a] - rawOwners[b])
  const values = new Uint32Array(length)
  const owners = new Uint32Array(length)
  order.forEach((from, to) => {
    values[to] = rawValues[from]
    owners[to] = rawOwners[from]
  })
  return { values, owners }
}

/**
 * Parses a server spec: `host`, `host:port`, `host:port:weight`, and IPv6 in
 * brackets, `[::1]`, `[::1]:11211`, `[::1]:11211:2`.
 *
 * @returns host (IPv6 without brackets), TCP port (default 11211) and weight (default 1)
 * @throws TypeError for an empty host, a port outside 1..65535, or a weight
 *   that is not an integer from 1 to 2^32-1
 */
export function parseServer (spec: string): { host: string, port: number, weight: number } {
  if (typeof spec !== 'string') throw new TypeError(`${PREFIX}a server must be a string like 'host:port', got ${typeof spec}`)
  let host: string
  let fields: string[]
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']')
    if (close === -1) throw invalidServer(spec, 'missing "]" after the IPv6 address')
    host = spec.slice(1, close)
    const tail = spec.slice(close + 1)
    if (tail !== '' && !tail.startsWith(':')) throw invalidServer(spec, 'expected ":" after "]"')
    fields = tail === '' ? [] : tail.slice(1).split(':')
  } else {
    const parts = spec.split(':')
    // '::' is never valid unbracketed; without this '::1' would read as an empty host
    if (parts.length > 3 || spec.includes('::')) throw invalidServer(spec, 'too many ":" (write an IPv6 address in brackets: [::1]:11211)')
    host = parts[0]
    fields = parts.slice(1)
  }
  if (fields.length > 2) throw invalidServer(spec, 'too many ":" after "]"')
  if (host === '') throw invalidServer(spec, 'the host is empty')
  if (/\s/.test(host)) throw invalidServer(spec, 'the host contains whitespace')
  const port = fields.length > 0 ? parseDecimal(fields[0]) : DEFAULT_PORT
  if (!(port >= 1 && port <= 65535)) throw invalidServer(spec, 'the port must be an integer from 1 to 65535')
  const weight = fields.length > 1 ? parseDecimal(fields[1]) : 1
  if (!(weight >= 1 && weight <= MAX_WEIGHT)) throw invalidServer(spec, `the weight must be an integer from 1 to ${MAX_WEIGHT}`)
  return { host, port, weight }
}

/** NaN unless the whole text is ASCII digits ("1e3", "+1", " 1" and "1.0" are refused). */
function parseDecimal (text: string): number {
  return /^[0-9]{1,10}$/.test(text) ? Number(text) : Number.NaN
}

function invalidServer (spec: string, reason: string): TypeError {
  return new TypeError(`${PREFIX}invalid server ${JSON.stringify(spec)}: ${reason}`)
}
