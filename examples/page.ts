// The example app's HTML: one template for its two pages, `/` (logged in)
// and `/login`. Plain forms that post and are sent on with a 303, no script,
// no build step.

/** What the page shows: who is logged in and their count, or nobody. */
export interface PageState {
  user: string | undefined
  views: number
  /** A line above the forms, e.g. why a login was refused. */
  notice?: string
}

const STYLE = `
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; }
  form { display: inline-block; margin: 0 .5rem .5rem 0; }
  button, input { font: inherit; padding: .3rem .7rem; }
  .notice { color: #a40; }
`

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

function loggedIn (user: string, views: number): string {
  return `
    <p id="who">Logged in as <strong>${escapeHtml(user)}</strong></p>
    <p>Count: <output id="count">${views}</output></p>
    <form method="post" action="/counter"><button id="count-button">Count</button></form>
    <form method="post" action="/logout"><button id="logout-button">Log out</button></form>`
}

const LOGGED_OUT = `
    <p id="who">Not logged in</p>
    <form method="post" action="/login">
      <label>Name <input id="user" name="user" required maxlength="64" autocomplete="username"></label>
      <button id="login-button">Log in</button>
    </form>`

/** The whole page for one state. */
export function renderPage ({ user, views, notice }: PageState): string {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>fastify-memcached-session example</title>
    <style>${STYLE}</style>
  </head>
  <body>
    <h1>Sessions in memcached</h1>
    ${notice === undefined ? '' : `<p class="notice">${escapeHtml(notice)}</p>`}
    ${user === undefined ? LOGGED_OUT : loggedIn(user, views)}
    <p><small>The browser holds only a signed session id; the name and the count live in memcached.</small></p>
  </body>
</html>
`
}
