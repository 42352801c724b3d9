// The published entry points: `require` and `import` of the package name
// (resolved through package.json "exports" to dist/ and esm/) give the same API.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'

const EXPORTS = ['memcachedSession', 'MemcachedClient', 'MemcachedError', 'MemcachedStore', 'MemoryStore']

function run (code: string, type: 'commonjs' | 'module'): string {
  const flag = type === 'module' ? '--input-type=module' : '--input-type=commonjs'
  return execFileSync(process.execPath, [flag, '-e', code], { encoding: 'utf8' }).trim()
}

test('require() gives every export, and fastify.register accepts the module itself', () => {
  const out = run(`
    const lib = require('fastify-memcached-session')
    const names = ${JSON.stringify(EXPORTS)}.filter((name) => typeof lib[name] !== 'function')
    if (names.length) throw new Error('missing: ' + names)
    if (lib.default !== lib.memcachedSession) throw new Error('default is not the plugin')
    const app = require('fastify')()
    app.register(require('fastify-memcached-session'), { secret: 'x'.repeat(32), store: new lib.MemoryStore() })
    app.get('/', async (request) => { request.session.set('n', 1); return 'ok' })
    app.inject('/').then((res) => { console.log(res.statusCode, typeof res.headers['set-cookie']); return app.close() })
  `, 'commonjs')
  assert.equal(out, '200 string')
})

test('import gives the same classes as require (no dual-package hazard)', () => {
  const out = run(`
    import plugin, * as lib from 'fastify-memcached-session'
    import { createRequire } from 'node:module'
    const cjs = createRequire(import.meta.url)('fastify-memcached-session')
    const missing = ${JSON.stringify(EXPORTS)}.filter((name) => typeof lib[name] !== 'function')
    if (missing.length) throw new Error('missing: ' + missing)
    console.log(plugin === cjs.default, lib.MemcachedError === cjs.MemcachedError, lib.MemcachedClient === cjs.MemcachedClient)
  `, 'module')
  assert.equal(out, 'true true true')
})
