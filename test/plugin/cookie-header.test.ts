// Reading the session cookie out of a `Cookie` header: every shape must give
// what the `cookie` package (the parser @fastify/cookie uses) gives, so the
// plugin and the rest of the app never disagree about which cookie is `sid`.
// Pure parsing: no server needed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parse } from 'cookie'
import { readCookie } from '../../src/plugin/cookie.js'

const A = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.sigA'
const B = 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB.sigB'

// [what the shape is about, header]; the expected answer is cookie.parse's.
const SHAPES: Array<[string, string]> = [
  ['alone', `sid=${A}`],
  ['absent', 'lang=en; theme=dark'],
  ['empty header', ''],
  ['one character', 's'],
  ['first of two', `sid=${A}; lang=en`],
  ['last of two', `lang=en; sid=${A}`],
  ['middle of three', `a=1; sid=${A}; b=2`],
  ['duplicate: the first wins', `sid=${A}; sid=${B}`],
  ['duplicate without space', `sid=${A};sid=${B}`],
  ['after a space inside another value', `lang=en sid=${A}; sid=${B}`],
  ['after a tab inside another value', `lang=en\tsid=${A}; sid=${B}`],
  ['only inside another value', `lang=en sid=${A}`],
  ['after = inside another value', `lang= sid=${A}`],
  ['after a comma', `lang=en,sid=${A}; sid=${B}`],
  ['after a comma and space', `lang=en, sid=${A}`],
  ['leading spaces', `   sid=${A}`],
  ['leading tab', `\tsid=${A}`],
  ['spaces after ;', `a=1;    sid=${A}`],
  ['tabs after ;', `a=1;\t\tsid=${A}`],
  ['mixed blanks after ;', `a=1; \t sid=${A}`],
  ['space before =', `sid =${A}`],
  ['tab before =', `sid\t=${A}`],
  ['space after =', `sid= ${A}`],
  ['tab after =', `sid=\t${A}`],
  ['trailing spaces', `sid=${A}   `],
  ['trailing tab before ;', `sid=${A}\t; a=1`],
  ['space inside the value', `sid=${A} x; a=1`],
  ['vertical tab is not trimmed', `\vsid=${A}; sid=${B}`],
  ['form feed is not trimmed', `a=1;\fsid=${A}`],
  ['no-break space is not trimmed', `a=1;\u00a0sid=${A}; sid=${B}`],
  ['newline is not trimmed', `a=1;\nsid=${A}; sid=${B}`],
  ['empty value', 'sid='],
  ['empty value then another', `sid=; sid=${A}`],
  ['blank value', 'sid=   ; a=1'],
  ['quoted value', `sid="${A}"`],
  ['quoted empty value', 'sid=""'],
  ['single quote', `sid="${A}`],
  ['percent-encoded value', 'sid=caf%C3%A9'],
  ['percent-encoded dot', `sid=${A.replace('.', '%2E')}`],
  ['broken percent-encoding kept as sent', 'sid=%E0%A4%A'],
  ['lone percent', 'sid=%'],
  ['percent-encoded name does not match', `s%69d=${A}`],
  ['name is a suffix of another name', `xsid=${A}; sid=${B}`],
  ['name is a prefix of another name', `sidx=${A}; sid=${B}`],
  ['name is a suffix, no real one', `connect.sid=${A}`],
  ['name is a prefix, no real one', `sid_legacy=${A}`],
  ['name with a dash suffix', `sid-2=${A}; sid=${B}`],
  ['name in upper case', `SID=${A}; sid=${B}`],
  ['name as a value', `a=sid; sid=${B}`],
  ['name as a value with =', `a=sid=${A}; sid=${B}`],
  ['pair without = before', `sid; sid=${A}`],
  ['pair without = after', `sid=${A}; flag`],
  ['name without =', 'sid'],
  ['name then ;', 'sid;'],
  ['only semicolons', ';;;'],
  ['empty pairs between', `;; ;sid=${A};;`],
  ['trailing ;', `sid=${A};`],
  ['trailing ; and space', `sid=${A}; `],
  ['leading ;', `;sid=${A}`],
  ['= in the value', `sid=${A}=x`],
  ['== in the value', 'sid==='],
  ['empty name', `=${A}; sid=${B}`],
  ['only =', '='],
  ['= then name', `=sid=${A}`],
  ['a value of only spaces and ;', 'sid= ; ;'],
  ['unicode in another value', `a=\u00e9\u4e2d; sid=${A}`],
  ['unicode value', 'sid=\u00e9'],
  ['control characters around', `a=\u0001; sid=${A}\u0000`],
  ['long header, cookie last', `${Array.from({ length: 200 }, (_, i) => `c${i}=${'v'.repeat(40)}`).join('; ')}; sid=${A}`],
  ['long header, many near misses', `${Array.from({ length: 300 }, () => `xsid=1 sid=2`).join('; ')}; sid=${B}`],
  ['long value', `sid=${'x'.repeat(8000)}`],
  ['long run of blanks', `a=1;${' \t'.repeat(4000)}sid=${A}`],
  ['long run of blanks inside a value', `a=1${' '.repeat(4000)}sid=${A}`]
]

test('the session cookie is read from a Cookie header exactly as the cookie package parses it', () => {
  assert.ok(SHAPES.length >= 50)
  for (const [shape, header] of SHAPES) {
    assert.equal(readCookie(header, 'sid'), parse(header).sid, shape)
  }
})

test('lang=en sid=<A>; sid=<B> gives B: a name counts only at the start of the header or after ;', () => {
  assert.equal(readCookie(`lang=en sid=${A}; sid=${B}`, 'sid'), B)
  assert.equal(readCookie(`lang=en\tsid=${A}; sid=${B}`, 'sid'), B)
  assert.equal(readCookie(`lang=en sid=${A}`, 'sid'), undefined)
})

test('other cookie names (tokens with punctuation) read as the cookie package reads them', () => {
  const names = ['connect.sid', 'session_id', '__Host-sid', 'a', 'x!#$&\'*+-.^_`|~']
  for (const name of names) {
    const headers = [
      `${name}=v`, `z${name}=a; ${name}=b`, `${name}z=a; ${name}=b`, `k=v ${name}=a; ${name}=b`,
      ` ${name} = v ; x=1`, `${name};${name}=b`, `${name}=%41`
    ]
    for (const header of headers) assert.equal(readCookie(header, name), parse(header)[name], `${name} in ${header}`)
  }
})

test('random garbage headers never throw and agree with the cookie package', () => {
  const alphabet = ['s', 'i', 'd', 'sid', '=', ';', ' ', '\t', '%', '%4', '%41', '"', 'x', ',', '\u00e9', '\v']
  let seed = 12345
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed
  }
  for (let round = 0; round < 5000; round++) {
    let header = ''
    const parts = next() % 24
    for (let i = 0; i < parts; i++) header += alphabet[next() % alphabet.length]
    assert.equal(readCookie(header, 'sid'), parse(header).sid, JSON.stringify(header))
  }
})
