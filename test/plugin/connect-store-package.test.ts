// The published `fastify-memcached-session/connect-store` entry point:
// `require` and `import` (through package.json "exports") give the same
// function, its classes share MemcachedClient with the package root, and the
// types resolve for both module systems.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'

function run (code: string, type: 'commonjs' | 'module'): string {
  const flag = type === 'module' ? '--input-type=module' : '--input-type=commonjs'
  return execFileSync(process.execPath, [flag, '-e', code], { encoding: 'utf8' }).trim()
}

test('require(\'fastify-memcached-session/connect-store\') gives connectStore, deriving from express-session\'s Store', () => {
  const out = run(`
    const lib = require('fastify-memcached-session/connect-store')
    const { MemcachedClient } = require('fastify-memcached-session')
    const session = require('express-session')
    if (typeof lib.connectStore !== 'function' || lib.default !== lib.connectStore) throw new Error('exports: ' + Object.keys(lib))
    const Store = lib.connectStore(session.Store)
    const store = new Store({ servers: ['127.0.0.1:1'] })
    const plain = new (lib.connectStore())({ servers: ['127.0.0.1:1'] })
    console.log(store instanceof session.Store, typeof store.createSession, store.client instanceof MemcachedClient, typeof plain.on)
    Promise.all([store.close(), plain.close()])
  `, 'commonjs')
  assert.equal(out, 'true function true function')
})

test('import of fastify-memcached-session/connect-store gives the same function as require (no dual-package hazard)', () => {
  const out = run(`
    import connectStore, { connectStore as named } from 'fastify-memcached-session/connect-store'
    import { MemcachedClient } from 'fastify-memcached-session'
    import { createRequire } from 'node:module'
    const cjs = createRequire(import.meta.url)('fastify-memcached-session/connect-store')
    const store = new (connectStore())({ servers: ['127.0.0.1:1'] })
    console.log(connectStore === cjs.connectStore, named === cjs.connectStore, store.client instanceof MemcachedClient)
    await store.close()
  `, 'module')
  assert.equal(out, 'true true true')
})

test('types resolve through "exports" for import and require, and fit @fastify/session\'s SessionStore', () => {
  const dir = join('build', 'connect-store-types')
  mkdirSync(dir, { recursive: true })
  const body = `
    const Store = connectStore()
    const store = new Store({ servers: ['127.0.0.1:11211'], prefix: 'app:', ttl: 3600 })
    const found: Promise<unknown> = store.get('sid').then((session) => session?.user)
    store.get('sid', (error: unknown, session?: ConnectSessionData | null) => { void error; void session })
    const done: Promise<void> = store.set('sid', { cookie: { expires: new Date() }, user: 'alice' })
    const asFastifySession: SessionStore = store
    store.on('disconnect', () => {})
    // @ts-expect-error ttl is a number of seconds
    void new Store({ ttl: '1d' })
    class Base { readonly base = true }
    const derived: { base: boolean } = new (connectStore(Base))({})
    void found; void done; void asFastifySession; void derived
  `
  writeFileSync(join(dir, 'check.mts'), `
    import connectStore, { type ConnectSessionData } from 'fastify-memcached-session/connect-store'
    import type { SessionStore } from '@fastify/session'
    ${body}
  `)
  writeFileSync(join(dir, 'check.cts'), `
    import { connectStore, type ConnectSessionData } from 'fastify-memcached-session/connect-store'
    import type { SessionStore } from '@fastify/session'
    ${body}
  `)
  const tsc = join('node_modules', 'typescript', 'bin', 'tsc')
  const args = [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node',
    join(dir, 'check.mts'), join(dir, 'check.cts')]
  try {
    execFileSync(process.execPath, args, { encoding: 'utf8' })
  } catch (error) {
    assert.fail(`tsc: ${(error as { stdout?: string }).stdout ?? String(error)}`)
  }
})
