import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { KetamaRing, hashKey, ketamaPoints, parseServer, type RingNode } from '../../src/protocol/ring.js'

const PREFIX = 'fastify-memcached-session: '

function node (spec: string): RingNode {
  const { host, port, weight } = parseServer(spec)
  return { id: `${host}:${port}`, host, port, weight }
}

function ring (...specs: string[]): KetamaRing<RingNode> {
  return new KetamaRing(specs.map(node))
}

// Keys shared by the oracle and stability tests: ASCII like a session store
// writes them, and multi-byte UTF-8 (the hash is over UTF-8 bytes).
const KEYS: string[] = []
for (let i = 0; i < 100_000; i++) {
  if (i % 10 === 7) KEYS.push(`ключ:${i}`)
  else if (i % 10 === 8) KEYS.push(`キー:${i}:🔑`)
  else KEYS.push(`key:${i}`)
}

// libmemcached's own ketama test: test/fixtures/ketama.hpp (ketama_test_cases)
// and test/tests/memcached/ketama.cpp in awesomized/libmemcached (formerly
// tests/ketama_test_cases.h). Servers "10.0.1.1:11211 600,10.0.1.2:11211 300,
// 10.0.1.3:11211 200,10.0.1.4:11211 350,10.0.1.5:11211 1000,
// 10.0.1.6:11211 800,10.0.1.7:11211 950,10.0.1.8:11211 100" with
// MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED. Each case: key, hash1 (the key's MD5
// hash), hash2 (the continuum point it lands on), server (10.0.1.N).
const LIBMEMCACHED_WEIGHTS = [600, 300, 200, 350, 1000, 800, 950, 100]
const LIBMEMCACHED_SERVERS = LIBMEMCACHED_WEIGHTS.map((weight, i) => `10.0.1.${i + 1}:11211:${weight}`)
// Points per server for that list, printed by a C program evaluating
// libmemcached's float expression (gcc -O2, x86-64), not by ring.ts.
const LIBMEMCACHED_POINTS = [176, 88, 56, 104, 296, 236, 280, 28]
const KETAMA_TEST_CASES: Array<[key: string, hash1: number, hash2: number, server: number]> = [
  ['SVa_]_V41)', 443691461, 445379617, 7],
  ['*/Z;?V(.\\8', 1422915503, 1428303028, 1],
  ['30C1*Z*S/_', 1473165754, 1480075959, 2],
  ['ERR:EC58G>', 2148406511, 2168579133, 7],
  ['1I=cTMNTKF', 2882686667, 2885206587, 5],
  [']VG<`I*Z8)', 1103544263, 1104827657, 5],
  ['UUTC`-V159', 3716288206, 3727224240, 5],
  ['@7RU6C6T+Z', 3862737685, 3871917949, 5],
  ['/XLN0@+36;', 1623269830, 1627683651, 1],
  ['4(`X;\\V.^c', 373546328, 383925769, 1],
  ['726bW=9*a4', 4213440020, 4213950705, 7],
  ['\\`)<B)UE,c', 951096736, 955226069, 1],
  ['P1[Ma3=K1/', 1989324036, 1994028240, 8],
  ['C89I.-V?cT', 1604239957, 1606398093, 8],
  ['D[HE+cFXDK', 2117036136, 2117124014, 3],
  ['P1L?NAB[)K', 2129972569, 2132542634, 1],
  ['cDT0)Z5P6,', 176485284, 178675413, 5],
  ['@JW`+[WAO8', 2720940826, 2743975456, 5],
  ['\\39DKW^)N_', 3548879868, 3550704865, 3],
  ['EM75N0+[X1', 1558531507, 1559308507, 4],
  ['`,SS]NBP,b', 1883545960, 1884847278, 1],
  ['XX1a9LT+F?', 653487707, 656410408, 5],
  ['Zc\\-,F-c6V', 1160802451, 1171575728, 5],
  ['1*RTMC7,03', 1602398012, 1606398093, 8],
  ['*Xc+V0P>32', 536016577, 539988520, 7],
  ['U))Fb-(`,.', 4128682289, 4136854163, 7],
  ['R-08RNTaRT', 3718170086, 3727224240, 5],
  ['(LHcO203I3', 1007779411, 1014643570, 5],
  ['=256P+;Qc8', 3976201210, 3976304873, 5],
  ['OI5XZ_BBT(', 2155922164, 2168579133, 7],
  ['2TLRL/UL;:', 1086800909, 1095659802, 7],
  ['WHD\\O1`ZRW', 3087923411, 3095471560, 5],
  ['.=54)_c;=T', 2497691631, 2502731301, 1],
  [';G<W-XWZ@b', 2888169733, 2888728739, 5],
  ['(,>E`)FT\\4', 580747448, 581063326, 2],
  ['HZAU*;P*N]', 2564670474, 2565697267, 7],
  ['NZ@ZE=O84_', 533335275, 539988520, 7],
  ['6,cEI`F_P>', 3972869246, 3974773167, 6],
  ['c,5AQ/T5)6', 2835605783, 2847870057, 8],
  ['.O,>>BT)RX', 3857978174, 3871917949, 5],
  ['XY\\X::LX50', 1749241099, 1752196488, 6],
  ['+550F^/.01', 3781824099, 3783248219, 6],
  ['<.X9E2S5+9', 3232479481, 3234387706, 7],
  [']\\.UH8_0a1', 2419699252, 2423002920, 4],
  ['8(6=(T0/Z0', 728266737, 729026070, 7],
  ['8*6a;Sc*X+', 4223431086, 4230156966, 2],
  ['<QW:;3K6;H', 2731158143, 2743975456, 5],
  ['7C@EY@-Y?_', 760770733, 761576669, 5],
  ['aPb3E1WD4K', 2500489218, 2502731301, 1],
  ['?@12R<=1BH', 1494795329, 1502505505, 8],
  ['QR(a+Q=1FU', 3238535074, 3238996435, 6],
  ['`C9^FV,960', 2628553463, 2628733766, 6],
  ['UNHVP..^8H', 977096483, 977319837, 4],
  [':Y.2W2[(35', 2777083668, 2784182515, 7],
  ['M/HV^_HZ4O', 3623390946, 3624445007, 7],
  ['ZY16KQ<ICD', 1831153193, 1838563516, 4],
  ['bV2,`a.PY9', 1962228869, 1962648654, 1],
  ['U;9:-+5N]9', 269504649, 277560877, 1],
  ['1S/:aJ[1(;', 578069729, 581063326, 2],
  ['Nb-X^]M)I:', 330865696, 331009896, 6],
  ['2;M;ES>J5/', 2776949824, 2784182515, 7],
  ['[>RZHG97Q9', 71954686, 72034069, 6],
  ['J3/G[)9<^Z', 2799896459, 2805183696, 7],
  ['N-)88>[O`,', 50404102, 51792557, 5],
  ['NP:=FR\\OaA', 3837333776, 3837792034, 7],
  ['`@L+W;a,O[', 1512157148, 1522285852, 6],
  ['W2`P:-+1T[', 2945171975, 2946196424, 5],
  ['-6G7K^YDIN', 3168617340, 3170513015, 7],
  ['U>*>9ZI6V5', 668514946, 674097631, 6],
  ['.I?^6Ic9RK', 938419020, 942832691, 6],
  ['0OZH^9BKM[', 3682518606, 3686781297, 8],
  ['5?50UGZ:ML', 868610882, 869425986, 5],
  ['?K2NF@3=IU', 381218851, 383925769, 1],
  ['YI@G-2X?UB', 3688706179, 3693197681, 5],
  ['7cY</BSaL=', 3976870223, 3978903843, 6],
  ['A(`KF:[RH8', 3292979676, 3294849139, 6],
  [';=ZT\\W^P+H', 1401102653, 1416290674, 4],
  ['b2?WFF56;R', 480494704, 486971192, 4],
  ['CTR74,J+N.', 137446045, 146633907, 8],
  ['<b;*R+QDST', 1304985302, 1308223778, 5],
  ['\\R^7=9UCG`', 126218373, 129199837, 5],
  ['1bQS5]WOXB', 1853470245, 1855329369, 4],
  ['M(@X^b[L:K', 3019630308, 3022260113, 1],
  ['431cBF8,YO', 1679726993, 1685224295, 7],
  ['(bEIQJ:E./', 2922607787, 2925521819, 6],
  ['WS/3H*)7F;', 419488232, 422140585, 5],
  ['ZJF[Ia6Q)+', 3960568056, 3962489998, 7],
  ['<]*QCK8U,>', 2590140172, 2598117636, 7],
  ['\\[a\\^=V_M0', 689410119, 698690782, 6],
  ['7;RM+8J9YC', 1530175299, 1531107082, 7],
  ['4*=.SPR[AV', 3928582722, 3928853792, 1],
  ['-2F+^88P4U', 3023552752, 3025823613, 7],
  ['X;-F`(N?9D', 570465234, 572485994, 7],
  ['R=F_D-K2a]', 1287750228, 1290935562, 7],
  ['X*+2aaC.EG', 3200948713, 3201088518, 5],
  ['[1ZXONX2]a', 4108881567, 4109865744, 4],
  ['FL;\\GWacaV', 458449508, 467374054, 4],
  ['\\MQ_XNT7L-', 1259349383, 1259509450, 7],
  ['VD6D0]ba_\\', 3842502950, 3842588691, 1],
]

/** A server's points rebuilt from the ketama description alone: MD5 of `host-i`, four little-endian uint32 per digest. */
function pointsOf (host: string, count: number): number[] {
  const points: number[] = []
  for (let i = 0; i < count / 4; i++) {
    const digest = createHash('md5').update(`${host}-${i}`).digest()
    for (let x = 0; x < 4; x++) points.push(digest.readUInt32LE(x * 4))
  }
  return points
}

function libmemcachedContinuum (): Array<{ value: number, server: number }> {
  return LIBMEMCACHED_POINTS.flatMap((count, i) => pointsOf(`10.0.1.${i + 1}`, count).map((value) => ({ value, server: i + 1 })))
}

test('libmemcached ketama_test_cases: hash, continuum point and server of all 99 keys', () => {
  const ours = ring(...LIBMEMCACHED_SERVERS)
  const continuum = libmemcachedContinuum()
  assert.equal(KETAMA_TEST_CASES.length, 99)
  for (const [key, hash1, hash2, server] of KETAMA_TEST_CASES) {
    assert.equal(hashKey(key), hash1, `hash of ${JSON.stringify(key)}`)
    // The published hash2 is the first point >= hash1: this pins the point
    // names, the 4 points per digest and the point counts, not just the result.
    const next = continuum.filter((point) => point.value >= hash1).reduce((a, b) => (b.value < a.value ? b : a))
    assert.deepEqual(next, { value: hash2, server }, `continuum point of ${JSON.stringify(key)}`)
    assert.equal(ours.get(key)?.id, `10.0.1.${server}:11211`, `server of ${JSON.stringify(key)}`)
  }
})

test('a hash past the last point wraps to the first point (libmemcached: VDEAAAAA)', () => {
  const ours = ring(...LIBMEMCACHED_SERVERS)
  const continuum = libmemcachedContinuum()
  const hash = hashKey('VDEAAAAA')
  assert.equal(hash, 0xfffcd1b5)
  const first = continuum.reduce((a, b) => (b.value < a.value ? b : a))
  const last = continuum.reduce((a, b) => (b.value > a.value ? b : a))
  assert.ok(hash > last.value)
  // Different owners, so landing on the last point instead would fail.
  assert.notEqual(first.server, last.server)
  assert.equal(ours.get('VDEAAAAA')?.id, `10.0.1.${first.server}:11211`)
})

test('a hash equal to a point belongs to that point\'s server, not the next one', () => {
  // The key "<host>-<group>" hashes to MD5("<host>-<group>") bytes 0..3, which
  // is exactly the first point of that group of that server: the lookup must
  // take the first point >= the hash, as libmemcached's dispatch_host does.
  const ours = ring(...LIBMEMCACHED_SERVERS)
  const continuum = libmemcachedContinuum().sort((a, b) => a.value - b.value || a.server - b.server)
  const firstAt = new Map<number, number>()
  continuum.forEach((point, index) => { if (!firstAt.has(point.value)) firstAt.set(point.value, index) })
  let nextOwnedByAnother = 0
  LIBMEMCACHED_POINTS.forEach((count, i) => {
    for (let group = 0; group < count / 4; group++) {
      const key = `10.0.1.${i + 1}-${group}`
      const at = firstAt.get(hashKey(key)) ?? -1
      assert.equal(continuum[at]?.server, i + 1, `${key} lands on a point of 10.0.1.${i + 1}`)
      assert.equal(ours.get(key)?.id, `10.0.1.${i + 1}:11211`, `server of ${key}`)
      assert.equal(ours.getN(key, 1)[0]?.id, `10.0.1.${i + 1}:11211`, `first replica server of ${key}`)
      if (continuum[(at + 1) % continuum.length]?.server !== i + 1) nextOwnedByAnother++
    }
  })
  // Enough of the exact hits sit before another server's point that taking the next point would show.
  assert.ok(nextOwnedByAnother > 100, `${nextOwnedByAnother} exact hits precede another server's point`)
})

test('ketamaPoints matches libmemcached\'s single-precision expression', () => {
  // [weight, total weight, live servers, points]: printed by a C program
  // evaluating update_continuum's expression (gcc -O2, x86-64, float). The
  // same expression in double gives 232, 464, 32, 16 for the first four.
  const cases: Array<[number, number, number, number]> = [
    [29, 60, 3, 228], [58, 60, 3, 460], [1, 25, 5, 28], [1, 50, 5, 12],
    [1, 7, 7, 160], [1, 14, 14, 160], [1, 3, 3, 160], [1, 1, 1, 160],
    [1, 3, 2, 104], [2, 3, 2, 212], [25, 48, 6, 496], [53, 60, 6, 848],
    [7, 400, 16, 44], [1, 4_000_000_001, 2, 0], [123_456_789, 4_123_456_789, 2, 8],
    [4_000_000_000, 4_000_000_001, 2, 320], [4_000_000_000, 4_050_331_651, 4, 632]
  ]
  for (const [weight, total, servers, points] of cases) {
    assert.equal(ketamaPoints(weight, total, servers), points, `weight ${weight} of ${total} on ${servers} servers`)
  }
  assert.deepEqual(LIBMEMCACHED_WEIGHTS.map((weight) => ketamaPoints(weight, 4300, 8)), LIBMEMCACHED_POINTS)
})

// npm hashring 3.2.0 as an independent implementation of the same continuum.
// It names points like libmemcached (`host-i` on the default port, else
// `host:port-i`) and reads digests the same way, but counts a server's points
// in double precision, floor(weight / total * 40 * servers) * 4, where
// libmemcached rounds each step to float. The counts differ for some sets,
// even with equal weights: 7 or 14 equal servers get 156 points in hashring,
// 160 in libmemcached; weights 1,1,1,1,21 give 32 vs 28 to the small ones.
// Where the counts agree, hashring is compared as is; where they differ, its
// per-server `vnodes` option is set to libmemcached's count / 4 (counts from
// the C program, not from ring.ts), which makes it place exactly those points.
interface HashRing {
  get (key: string): string | undefined
  range (key: string, size: number, unique: boolean): string[]
}
type HashRingClass = new (servers: string[] | Record<string, number | { vnodes: number }>, algorithm: string, options: Record<string, number>) => HashRing
const HashRing = createRequire(__filename)('hashring') as HashRingClass

function hashring (servers: string[] | Record<string, number | { vnodes: number }>, options: Record<string, number> = {}): HashRing {
  return new HashRing(servers, 'md5', { 'default port': 11211, ...options })
}

function hashringPoints (weight: number, total: number, servers: number): number {
  return Math.floor(weight / total * 40 * servers) * 4
}

function countDifferences (ours: KetamaRing<RingNode>, oracle: HashRing, keys: readonly string[]): { count: number, first: string | undefined } {
  let count = 0
  let first: string | undefined
  for (const key of keys) {
    if (ours.get(key)?.id !== oracle.get(key)) {
      count++
      first ??= key
    }
  }
  return { count, first }
}

function assertSameAsHashring (specs: string[], oracle: HashRing, keys: readonly string[] = KEYS): void {
  const { count, first } = countDifferences(ring(...specs), oracle, keys)
  assert.equal(count, 0, `${count} of ${keys.length} keys map elsewhere than in hashring, the first is ${JSON.stringify(first)}`)
}

/** Weighted servers as hashring takes them: `{ 'host:port': weight }`. */
function weighted (specs: string[]): Record<string, number> {
  return Object.fromEntries(specs.map((spec) => {
    const { host, port, weight } = parseServer(spec)
    return [`${host}:${port}`, weight]
  }))
}

/** Asserts the precondition of comparing with hashring as is. */
function assertSameCounts (specs: string[]): void {
  const weights = specs.map((spec) => parseServer(spec).weight)
  const total = weights.reduce((sum, weight) => sum + weight, 0)
  for (const weight of weights) {
    assert.equal(ketamaPoints(weight, total, weights.length), hashringPoints(weight, total, weights.length))
  }
}

test('hashring oracle: 3 equal servers on port 11211, 100,000 keys', () => {
  const specs = ['127.0.0.1:11211', '127.0.0.2:11211', '127.0.0.3:11211']
  assertSameCounts(specs)
  assertSameAsHashring(specs, hashring(specs))
})

test('hashring oracle: servers on other ports and names, 100,000 keys', () => {
  const specs = ['10.0.0.1:11212', '10.0.0.1:11213', 'cache-a.internal:22122', 'cache-b.internal:11211']
  assertSameCounts(specs)
  assertSameAsHashring(specs, hashring(specs))
})

test('hashring oracle: unequal weights where hashring counts like libmemcached, 100,000 keys', () => {
  const specs = ['10.0.0.1:11211:5', '10.0.0.2:11212:3', 'cache-c:11211:2', 'cache-d:11300:1']
  assertSameCounts(specs)
  assertSameAsHashring(specs, hashring(weighted(specs)))
  assertSameCounts(LIBMEMCACHED_SERVERS)
  assertSameAsHashring(LIBMEMCACHED_SERVERS, hashring(weighted(LIBMEMCACHED_SERVERS)), KEYS.slice(0, 20_000))
})

test('hashring oracle where hashring counts points differently: 7 equal servers, weights 1,1,1,1,21', () => {
  const keys = KEYS.slice(0, 30_000)
  const seven = Array.from({ length: 7 }, (_, i) => `10.0.0.${i + 1}:11211`)
  const skewed = ['10.0.1.1:11211:1', '10.0.1.2:11211:1', '10.0.1.3:11211:1', '10.0.1.4:11211:1', '10.0.1.5:11211:21']
  const cases: Array<[string[], number[]]> = [[seven, [160, 160, 160, 160, 160, 160, 160]], [skewed, [28, 28, 28, 28, 672]]]
  for (const [specs, points] of cases) {
    const plain = countDifferences(ring(...specs), hashring(weighted(specs)), keys)
    assert.ok(plain.count > 0, 'hashring as is places fewer or more points than libmemcached here')
    const vnodes = Object.fromEntries(specs.map((spec, i) => [node(spec).id, { vnodes: points[i] / 4 }]))
    assertSameAsHashring(specs, hashring(vnodes, { 'vnode count': 0 }), keys)
  }
})

test('getN walks the continuum like hashring.range(key, n, unique)', () => {
  const specs = ['10.0.0.1:11211:5', '10.0.0.2:11212:3', 'cache-c:11211:2', 'cache-d:11300:1']
  const ours = ring(...specs)
  const oracle = hashring(weighted(specs))
  for (const key of KEYS.slice(0, 5_000)) {
    for (const n of [2, 3, 4]) {
      assert.deepEqual(ours.getN(key, n).map((server) => server.id), oracle.range(key, n, true), `${key}, n = ${n}`)
    }
  }
})

const FOUR = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211', '10.0.0.4:11211']

test('removing one of 4 equal servers moves only its keys, to the next server on the ring; adding it back restores the mapping', () => {
  const full = ring(...FOUR)
  const without = ring(FOUR[0], FOUR[1], FOUR[3])
  const again = ring(...FOUR)
  const removed = node(FOUR[2]).id
  let moved = 0
  let stayedWrong = 0
  let movedWrong = 0
  let restoredWrong = 0
  for (const key of KEYS) {
    const before = full.get(key)?.id
    const after = without.get(key)?.id
    if (before === removed) {
      moved++
      // the replica target is where the key goes when its server leaves
      if (after === removed || after !== full.getN(key, 2)[1].id) movedWrong++
    } else if (after !== before) {
      stayedWrong++
    }
    if (again.get(key)?.id !== before) restoredWrong++
  }
  assert.equal(stayedWrong, 0, 'keys of the remaining servers moved')
  assert.equal(movedWrong, 0, 'keys of the removed server went elsewhere than the next server')
  assert.equal(restoredWrong, 0, 'adding the server back did not restore the mapping')
  assert.ok(moved > 15_000 && moved < 35_000, `the removed server held ${moved} keys`)
})

test('the order of the server list does not change the mapping', () => {
  const forward = ring(...FOUR, 'cache-e:11212:2')
  const backward = ring('cache-e:11212:2', ...[...FOUR].reverse())
  const { count } = countDifferences(forward, hashringOf(backward), KEYS.slice(0, 20_000))
  assert.equal(count, 0)
})

/** Adapts a ring to the oracle interface to compare two rings of ours. */
function hashringOf (other: KetamaRing<RingNode>): HashRing {
  return { get: (key) => other.get(key)?.id, range: (key, n) => other.getN(key, n).map((server) => server.id) }
}

test('keys spread by weight', () => {
  const equal = ring(...FOUR)
  const counts = new Map<string, number>()
  for (const key of KEYS) {
    const id = equal.get(key)?.id ?? 'none'
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  assert.deepEqual([...counts.keys()].sort(), FOUR)
  for (const [id, count] of counts) assert.ok(count > 18_000 && count < 32_000, `${id} holds ${count} of 100,000 keys`)
  const heavy = ring('10.0.0.1:11211:3', '10.0.0.2:11211', '10.0.0.3:11211')
  const onHeavy = KEYS.filter((key) => heavy.get(key)?.id === '10.0.0.1:11211').length
  assert.ok(onHeavy > 50_000 && onHeavy < 70_000, `weight 3 of 5 holds ${onHeavy} of 100,000 keys`)
})

test('getN returns distinct servers, get(key) first, all of them for n >= size', () => {
  const ours = ring(...FOUR)
  const all = [...FOUR].sort()
  for (const key of KEYS.slice(0, 2_000)) {
    const two = ours.getN(key, 2)
    assert.equal(two.length, 2)
    assert.equal(two[0], ours.get(key))
    assert.notEqual(two[0].id, two[1].id)
    assert.deepEqual(ours.getN(key, 1), [ours.get(key)])
    const three = ours.getN(key, 3)
    assert.deepEqual(three.slice(0, 2), two)
    assert.equal(new Set(three.map((server) => server.id)).size, 3)
    assert.deepEqual(ours.getN(key, 4).map((server) => server.id).sort(), all)
    assert.deepEqual(ours.getN(key, 10).map((server) => server.id).sort(), all)
  }
  assert.deepEqual(ours.getN('k', 0), [])
  assert.deepEqual(ours.getN('k', -1), [])
  assert.equal(ours.size, 4)
})

test('a server too light to get any point is never chosen by get, and comes last in getN', () => {
  assert.equal(ketamaPoints(1, 4_000_000_001, 2), 0)
  const ours = ring('light:11211:1', 'heavy:11211:4000000000')
  for (const key of KEYS.slice(0, 2_000)) {
    assert.equal(ours.get(key)?.id, 'heavy:11211')
    assert.deepEqual(ours.getN(key, 2).map((server) => server.id), ['heavy:11211', 'light:11211'])
  }
})

test('an empty ring has no server for any key', () => {
  const empty = new KetamaRing([])
  assert.equal(empty.size, 0)
  assert.equal(empty.get('key'), undefined)
  assert.deepEqual(empty.getN('key', 3), [])
})

test('the ring keeps the caller\'s node objects', () => {
  const nodes = FOUR.map((spec) => ({ ...node(spec), pool: spec }))
  const ours = new KetamaRing(nodes)
  assert.ok(nodes.includes(ours.get('key:1') as typeof nodes[number]))
  assert.equal(ours.get('key:1')?.pool, ours.get('key:1')?.id)
})

test('the ring refuses a bad weight or the same server twice', () => {
  const bad = (weight: number): RingNode => ({ id: 'a:11211', host: 'a', port: 11211, weight })
  for (const weight of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
    assert.throws(() => new KetamaRing([bad(weight)]), (error: unknown) => error instanceof TypeError && error.message.startsWith(PREFIX) && /weight/.test(error.message))
  }
  assert.throws(() => ring('a:11211', 'b:11211', 'a:11211'), (error: unknown) => error instanceof TypeError && error.message.startsWith(PREFIX) && /twice/.test(error.message))
})

test('parseServer reads host, port and weight', () => {
  assert.deepEqual(parseServer('cache1'), { host: 'cache1', port: 11211, weight: 1 })
  assert.deepEqual(parseServer('cache1:11212'), { host: 'cache1', port: 11212, weight: 1 })
  assert.deepEqual(parseServer('10.0.0.1:11211:3'), { host: '10.0.0.1', port: 11211, weight: 3 })
  assert.deepEqual(parseServer('[::1]:11211'), { host: '::1', port: 11211, weight: 1 })
  assert.deepEqual(parseServer('[::1]:11300:2'), { host: '::1', port: 11300, weight: 2 })
  assert.deepEqual(parseServer('[fe80::1]'), { host: 'fe80::1', port: 11211, weight: 1 })
  assert.deepEqual(parseServer('h:1'), { host: 'h', port: 1, weight: 1 })
  assert.deepEqual(parseServer('h:65535:4294967295'), { host: 'h', port: 65535, weight: 4294967295 })
})

test('parseServer refuses bad specs with a TypeError', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /host is empty/], [':11211', /host is empty/], ['[]:11211', /host is empty/], ['ho st:11211', /whitespace/],
    ['h:0', /port/], ['h:65536', /port/], ['h:', /port/], ['h:abc', /port/], ['h:-1', /port/], ['h:1e3', /port/], ['h: 11211', /port/],
    ['h:11211:0', /weight/], ['h:11211:-1', /weight/], ['h:11211:1.5', /weight/], ['h:11211:x', /weight/], ['h:11211:', /weight/],
    ['h:11211:4294967296', /weight/], ['[::1]:11211:0', /weight/],
    ['::1', /brackets/], ['h:1:2:3', /brackets/], ['[::1', /"]"/], ['[::1]11211', /":" after/], ['[::1]:1:2:3', /too many/]
  ]
  for (const [spec, reason] of cases) {
    assert.throws(() => parseServer(spec), (error: unknown) => {
      assert.ok(error instanceof TypeError, `${JSON.stringify(spec)} throws a TypeError`)
      assert.ok(error.message.startsWith(PREFIX), error.message)
      assert.match(error.message, reason)
      return true
    }, JSON.stringify(spec))
  }
})
