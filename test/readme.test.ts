// The README's quick start works as printed: its code block, taken from
// README.md itself, type-checks against the published types and, run against
// a real memcached, logs in, counts, and logs out. Only the server address and
// the port are swapped for the test's own.
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'
import { useMemcached } from './helpers/shared-memcached.js'

// The compiled test runs from build/test; the repository is two levels up.
const ROOT = path.join(__dirname, '..', '..')
// Inside the repository, so that the package resolves to itself by name.
const ARTIFACTS = path.join(ROOT, 'test', 'artifacts')
const PRINTED_SERVER = "'127.0.0.1:11211'"
const PRINTED_LISTEN = 'port: 3000'

const memcached = useMemcached()

/** The first ```ts block after the "## Quick start" heading of README.md. */
function quickStart (): string {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('\n## Quick start\n'))
  const block = /```ts\n([\s\S]*?)\n```/.exec(section)?.[1]
  assert.ok(block !== undefined, 'README.md has no ```ts block under "## Quick start"')
  return block
}

/** Writes `source` to test/artifacts/<name> and returns its path. */
function artifact (name: string, source: string): string {
  mkdirSync(ARTIFACTS, { recursive: true })
  const file = path.join(ARTIFACTS, name)
  writeFileSync(file, source)
  return file
}

test('the README quick start type-checks against the published types, strict', () => {
  const file = artifact('readme-quick-start.mts', quickStart())
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: ['node'],
    skipLibCheck: true
  })
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  assert.deepEqual(problems, [])
})

test('the README quick start, run against memcached, logs in, counts per session and logs out', async () => {
  const code = quickStart()
  assert.ok(code.includes(PRINTED_SERVER) && code.includes(PRINTED_LISTEN), 'the quick start no longer names the server or port this test swaps')
  const runnable = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
    .replace(PRINTED_SERVER, `'${memcached.server.address}'`)
    .replace(PRINTED_LISTEN, "port: 0, host: '127.0.0.1'") + '\nexport { app }\n'
  process.env.SESSION_SECRET = 'a quick-start secret of 32+ characters'
  const module = await import(pathToFileURL(artifact('readme-quick-start.mjs', runnable)).href) as { app: { server: { address: () => AddressInfo }, close: () => Promise<void> } }
  const base = `http://127.0.0.1:${module.app.server.address().port}`
  try {
    const login = await fetch(`${base}/login`, { method: 'POST' })
    const cookie = login.headers.get('set-cookie')?.split(';')[0]
    assert.ok(cookie?.startsWith('sid=') === true, `login set no session cookie: ${String(cookie)}`)
    const visit = async (): Promise<unknown> => await (await fetch(base, { headers: { cookie } })).json()
    assert.deepEqual(await visit(), { user: 'alice', views: 1 })
    assert.deepEqual(await visit(), { user: 'alice', views: 2 })
    assert.equal((await fetch(`${base}/logout`, { method: 'POST', headers: { cookie } })).status, 200)
    // The old cookie now holds a key to nothing: a fresh, anonymous session.
    assert.deepEqual(await visit(), { views: 1 })
  } finally {
    await module.app.close()
  }
})
