// The example app (examples/app.ts) in headless Chromium, against real
// memcached: what a user's browser really does with the session cookie
// (HttpOnly, SameSite, Max-Age), the Back button after logout, and restarts
// of the app and of memcached. The steps run in order and share one browser;
// each saves a screenshot under test/artifacts/ for whoever debugs a failure.
import assert from 'node:assert/strict'
import { mkdirSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Browser, BrowserContext, Page, Response } from 'playwright-core'
import { launchChromium } from '../helpers/chromium.js'
import { ExampleApp, type ExampleEnv } from '../helpers/example-app.js'
import { MemcachedServer, freePort } from '../helpers/memcached.js'

// build/test/browser -> test/artifacts in the repository.
const ARTIFACTS = path.join(__dirname, '..', '..', '..', 'test', 'artifacts')
const STEP = { timeout: 90_000 }
const MAX_AGE = 3

let memcached: MemcachedServer
let app: ExampleApp
let env: ExampleEnv
let browser: Browser
let context: BrowserContext
let page: Page
let otherSite: Server
let otherPort: number
let shots = 0

async function screenshot (name: string, on: Page = page): Promise<void> {
  await on.screenshot({ path: path.join(ARTIFACTS, `browser-${String(++shots).padStart(2, '0')}-${name}.png`), fullPage: true })
}

/** Text of an element of the page as it is now (no waiting: the caller awaited the navigation). */
async function text (selector: string, on: Page = page): Promise<string> {
  return (await on.locator(selector).textContent({ timeout: 5_000 }))?.trim() ?? ''
}

/** Clicks a form button and waits for the page the form post leads to (POST, then 303 to a GET). */
async function submit (selector: string, on: Page = page): Promise<void> {
  const loaded = on.waitForEvent('load')
  await on.click(selector)
  await loaded
}

async function login (name: string, on: Page = page, url = app.url): Promise<void> {
  await on.goto(`${url}/login`)
  await on.fill('#user', name)
  await submit('#login-button', on)
  assert.equal(await text('#who', on), `Logged in as ${name}`)
}

/** The session cookie as the browser stores it, if it holds one for the app. */
async function sessionCookie (of: BrowserContext = context): Promise<{ value: string, httpOnly: boolean, sameSite: string, expires: number } | undefined> {
  return (await of.cookies(app.url)).find((cookie) => cookie.name === 'sid')
}

/** Scripts on the page never see the session cookie, though the browser holds it. */
async function assertCookieHidden (on: Page = page): Promise<void> {
  const visible = await on.evaluate('document.cookie') as string
  assert.ok(!/(^|;\s*)sid=/.test(visible), `document.cookie shows the session cookie: ${visible}`)
}

function assertOk (response: Response | null, what: string): void {
  assert.ok(response !== null, `${what}: a response from the server, not from a cache`)
  assert.equal(response.status(), 200, `${what}: status ${response.status()}`)
}

/** A page on another site with a form that posts to the app's counter. */
async function startOtherSite (): Promise<void> {
  otherSite = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title></head><body>
      <h1>Win a prize</h1>
      <form method="post" action="${app.url}/counter"><button id="attack">Claim</button></form>
    </body></html>`)
  })
  otherPort = await freePort()
  otherSite.listen(otherPort, '127.0.0.1')
  await once(otherSite, 'listening')
}

before(async () => {
  rmSync(ARTIFACTS, { recursive: true, force: true })
  mkdirSync(ARTIFACTS, { recursive: true })
  memcached = await MemcachedServer.start()
  env = { SESSION_SECRET: 'browser-test-secret-that-is-long-enough-01', MEMCACHED_SERVERS: memcached.address }
  app = await ExampleApp.start(env)
  await startOtherSite()
  // localhost is another site than 127.0.0.1, but the same machine: pin it to IPv4, where the other site listens.
  browser = await launchChromium(['--host-resolver-rules=MAP localhost 127.0.0.1'])
  context = await browser.newContext()
  context.setDefaultTimeout(20_000)
  page = await context.newPage()
}, { timeout: 120_000 })

after(async () => {
  await browser?.close()
  await app?.stop()
  otherSite?.close()
  await memcached?.stop()
}, { timeout: 60_000 })

describe('the example app in headless Chromium', () => {
  test('log in, count three times, reload: still logged in and the count kept', STEP, async () => {
    await login('alice')
    await assertCookieHidden()
    await screenshot('logged-in')
    for (let count = 1; count <= 3; count++) {
      await submit('#count-button')
      assert.equal(await text('#count'), String(count))
      await assertCookieHidden()
    }
    await screenshot('counted-three-times')
    assertOk(await page.reload(), 'reload')
    assert.equal(await text('#who'), 'Logged in as alice')
    assert.equal(await text('#count'), '3')
    await screenshot('reloaded')
  })

  test('the session cookie is HttpOnly and SameSite=Lax: the browser holds it, document.cookie never shows it', STEP, async () => {
    const cookie = await sessionCookie()
    assert.ok(cookie !== undefined, 'the browser holds the session cookie')
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.sameSite, 'Lax')
    assert.equal(cookie.expires, -1, 'no Max-Age by default: the cookie ends with the browser')
    await assertCookieHidden()
  })

  test('a logged-in page goes out Cache-Control: private, no-store', STEP, async () => {
    const response = await page.reload()
    assertOk(response, 'reload')
    assert.equal(await response?.headerValue('cache-control'), 'private, no-store')
  })

  test('a form on another site posting to the app does not carry the session cookie (SameSite=Lax)', STEP, async () => {
    const attacker = await context.newPage()
    for (const [site, carries] of [[`http://localhost:${otherPort}`, false], [`http://127.0.0.1:${otherPort}`, true]] as const) {
      // 127.0.0.1 on another port is the same site (ports do not count): there the
      // cookie goes along, which shows this test can see a cookie when one is sent.
      await attacker.goto(`${site}/`)
      await screenshot(carries ? 'same-site-form' : 'cross-site-form', attacker)
      const posted = attacker.waitForRequest((request) => request.method() === 'POST' && request.url() === `${app.url}/counter`)
      await submit('#attack', attacker)
      const cookieHeader = (await (await posted).allHeaders()).cookie ?? ''
      assert.equal(/(^|;\s*)sid=/.test(cookieHeader), carries, `POST from ${site}: Cookie header ${JSON.stringify(cookieHeader)}`)
      // Then the browser follows the 303 to the app's page, a top-level GET, which Lax lets the cookie join.
      assert.equal(await text('#who', attacker), 'Logged in as alice')
      assert.equal(await text('#count', attacker), carries ? '4' : '3', carries ? 'the same-site post counted' : 'the cross-site post changed nothing')
      await screenshot(carries ? 'after-same-site-post' : 'after-cross-site-post', attacker)
    }
    await attacker.close()
  })

  test('restart the app with the same SESSION_SECRET: still logged in, the session lives in memcached', STEP, async () => {
    await app.stop()
    app = await ExampleApp.start(env, app.port)
    assertOk(await page.reload(), 'reload after the app restarted')
    assert.equal(await text('#who'), 'Logged in as alice')
    assert.equal(await text('#count'), '4')
    await screenshot('app-restarted')
  })

  test('log out, press Back: the page shows logged out, not a logged-in page from a cache', STEP, async () => {
    await submit('#count-button')
    assert.equal(await text('#count'), '5')
    await submit('#logout-button')
    assert.equal(page.url(), `${app.url}/login`)
    assert.equal(await text('#who'), 'Not logged in')
    assert.equal(await sessionCookie(), undefined, 'logout cleared the cookie')
    await screenshot('logged-out')
    // Back to the logged-in page at /. Without Cache-Control: no-store on it,
    // Chromium restores it from the back/forward cache as it was. A restored
    // page fires no load event, so wait for the commit only (the text is read
    // from the document committed then, waiting for the element if need be).
    await page.goBack({ waitUntil: 'commit' })
    const who = await text('#who')
    await screenshot('back-after-logout')
    assert.equal(who, 'Not logged in', 'Back after logout shows the page as it is now')
  })

  test('restart memcached: logged out cleanly, no error page', STEP, async () => {
    await login('bob')
    await submit('#count-button')
    assert.equal(await text('#count'), '1')
    await memcached.restart()
    const response = await page.reload()
    assertOk(response, 'reload after memcached restarted')
    assert.equal(await text('#who'), 'Not logged in')
    await screenshot('memcached-restarted')
    await login('bob')
    assert.equal(await text('#count'), '0', 'a new login starts a new session')
    await assertCookieHidden()
  })

  test('with cookie.maxAge (SESSION_MAX_AGE) the browser drops the cookie once it expires', STEP, async () => {
    await app.stop()
    app = await ExampleApp.start({ ...env, SESSION_MAX_AGE: String(MAX_AGE) }, app.port)
    const remembered = await browser.newContext()
    try {
      const tab = await remembered.newPage()
      const loggedInAt = Date.now() / 1000
      await login('carol', tab)
      const cookie = await sessionCookie(remembered)
      assert.ok(cookie !== undefined, 'the browser holds the session cookie')
      assert.ok(cookie.expires > loggedInAt && cookie.expires <= Date.now() / 1000 + MAX_AGE + 1, `expires ${cookie.expires - loggedInAt} s after login`)
      await screenshot('max-age-logged-in', tab)
      // The browser forgets the cookie at its expiry: wait for that, within a bound.
      const deadline = Date.now() + (MAX_AGE + 10) * 1000
      while (await sessionCookie(remembered) !== undefined) {
        assert.ok(Date.now() < deadline, `the cookie outlived its Max-Age of ${MAX_AGE} s by 10 s`)
        await tab.waitForTimeout(100)
      }
      assertOk(await tab.reload(), 'reload after the cookie expired')
      assert.equal(await text('#who', tab), 'Not logged in')
      await screenshot('max-age-expired', tab)
    } finally {
      await remembered.close()
    }
  })
})
