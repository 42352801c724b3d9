// The documentation holds together: every relative link and #anchor in
// README.md and docs/*.md resolves (by GitHub's heading-anchor rules), and
// every option of the plugin and of the client, read from the TypeScript
// source, is in its options table with the default its TSDoc states.
import assert from 'node:assert/strict'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import ts from 'typescript'

// The compiled test runs from build/test; the repository is two levels up.
const ROOT = path.join(__dirname, '..', '..')

function read (file: string): string {
  return readFileSync(path.join(ROOT, file), 'utf8')
}

/** README.md and every docs/*.md, as paths relative to the repository. */
function markdownFiles (): string[] {
  const docs = existsSync(path.join(ROOT, 'docs')) ? readdirSync(path.join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`) : []
  return ['README.md', ...docs.sort()]
}

/** The lines of a Markdown file outside fenced code blocks, with their 1-based numbers. */
function proseLines (markdown: string): Array<{ line: string, number: number }> {
  const lines: Array<{ line: string, number: number }> = []
  let fence: string | undefined
  markdown.split('\n').forEach((line, index) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === undefined && marker !== undefined) fence = marker[0]
    else if (fence !== undefined && marker?.[0] === fence) fence = undefined
    else if (fence === undefined) lines.push({ line, number: index + 1 })
  })
  return lines
}

/**
 * GitHub's heading anchor (github-slugger): the heading's text, lower-cased,
 * without anything but letters, marks, digits, connector punctuation (`_`),
 * hyphens and spaces, spaces turned into hyphens; a repeated slug gets -1, -2….
 */
function slug (heading: string, seen: Map<string, number>): string {
  const text = heading
    .replace(/<[^>]+>/g, '')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-')
  const count = seen.get(text)
  seen.set(text, (count ?? -1) + 1)
  return count === undefined ? text : `${text}-${count + 1}`
}

/** Every anchor a Markdown file offers: its headings' slugs and explicit `<a id>`/`<a name>`. */
function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const { line } of proseLines(markdown)) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1]
    if (heading !== undefined) anchors.add(slug(heading, seen))
    for (const match of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(match[1] ?? '')
  }
  return anchors
}

/** Link targets in prose (inline links, images, reference definitions, href/src), not in code. */
function linksOf (markdown: string): Array<{ target: string, number: number }> {
  const links: Array<{ target: string, number: number }> = []
  for (const { line, number } of proseLines(markdown)) {
    const prose = line.replace(/(`+)[^`]*?\1/g, '')
    for (const match of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push({ target: match[1] ?? '', number })
    for (const match of prose.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/g)) links.push({ target: match[1] ?? '', number })
    for (const match of prose.matchAll(/\b(?:href|src)="([^"]+)"/g)) links.push({ target: match[1] ?? '', number })
  }
  return links
}

test('GitHub anchors: punctuation dropped, spaces to hyphens, repeats numbered', () => {
  const seen = new Map<string, number>()
  assert.equal(slug('Sessions: the Fastify plugin', seen), 'sessions-the-fastify-plugin')
  assert.equal(slug('Migrating from `@fastify/session`', seen), 'migrating-from-fastifysession')
  assert.equal(slug('`request.session`', seen), 'requestsession')
  assert.equal(slug('MC_TIMEOUT', seen), 'mc_timeout')
  assert.equal(slug('Errors', seen), 'errors')
  assert.equal(slug('Errors', seen), 'errors-1')
  assert.equal(slug('CPU of the client process per command, µs (median)', seen), 'cpu-of-the-client-process-per-command-µs-median')
  assert.equal(slug('[Linked](https://example.com) heading', seen), 'linked-heading')
})

test('README.md is at most 300 lines; the rest is in docs/', () => {
  const lines = read('README.md').trimEnd().split('\n').length
  assert.ok(lines <= 300, `README.md has ${lines} lines`)
  assert.deepEqual(markdownFiles().filter((file) => file.startsWith('docs/')), ['benchmarks', 'client', 'operations', 'reliability', 'sessions'].map((name) => `docs/${name}.md`))
})

test('every relative link and #anchor in README.md and docs/*.md resolves', () => {
  const broken: string[] = []
  const anchors = new Map<string, Set<string>>()
  const anchorsIn = (file: string): Set<string> => {
    let found = anchors.get(file)
    if (found === undefined) anchors.set(file, found = anchorsOf(read(file)))
    return found
  }
  let checked = 0
  for (const file of markdownFiles()) {
    for (const { target, number } of linksOf(read(file))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue
      checked++
      const hash = target.indexOf('#')
      const filePart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1))
      const linked = filePart === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), filePart))
      if (!existsSync(path.join(ROOT, linked))) {
        broken.push(`${file}:${number}: ${target} (no file ${linked})`)
      } else if (anchor !== undefined && linked.endsWith('.md') && !anchorsIn(linked).has(anchor)) {
        broken.push(`${file}:${number}: ${target} (no heading #${anchor} in ${linked})`)
      }
    }
  }
  assert.ok(checked > 0, 'found relative links to check')
  assert.deepEqual(broken, [])
})

/** An option as the TypeScript source declares it: dotted name and the default its TSDoc states. */
interface DeclaredOption { name: string, defaultValue: string | undefined }

/**
 * The properties of an exported interface, read with the TypeScript
 * compiler; a property typed by another interface of the same file
 * (`cookie: SessionCookieOptions`) contributes its own as `cookie.path`….
 */
function declaredOptions (file: string, interfaceName: string, prefix = ''): DeclaredOption[] {
  const source = ts.createSourceFile(file, read(file), ts.ScriptTarget.Latest, true)
  const interfaces = new Map<string, ts.InterfaceDeclaration>()
  source.forEachChild((node) => { if (ts.isInterfaceDeclaration(node)) interfaces.set(node.name.text, node) })
  const declaration = interfaces.get(interfaceName)
  assert.ok(declaration !== undefined, `${file} declares ${interfaceName}`)
  return declaration.members.flatMap((member): DeclaredOption[] => {
    if (!ts.isPropertySignature(member) || member.name === undefined) return []
    const name = prefix + member.name.getText(source)
    const type = member.type !== undefined && ts.isTypeReferenceNode(member.type) ? member.type.typeName.getText(source) : undefined
    if (type !== undefined && interfaces.has(type)) {
      return [{ name, defaultValue: stated(member, source) }, ...declaredOptions(file, type, `${name}.`)]
    }
    return [{ name, defaultValue: stated(member, source) }]
  })
}

/** The default a property's TSDoc states ("Default `x`", "Default 1000", "Default: none"), normalized. */
function stated (member: ts.Node, source: ts.SourceFile): string | undefined {
  const doc = ts.getJSDocCommentsAndTags(member).map((node) => node.getText(source)).join(' ').replace(/\s*\n\s*\*?\s*/g, ' ')
  const after = /\bDefault:?\s+(.*)$/.exec(doc)?.[1]
  if (after === undefined) return undefined
  const value = after.startsWith('`') ? /^`([^`]*)`/.exec(after)?.[1] : /^(\d[\d _]*\d|\d|[^\s.;,:)]+)/.exec(after)?.[1]
  return value === undefined ? undefined : normalize(value)
}

/** Compares defaults as written, whatever the digit grouping or code formatting. */
function normalize (text: string): string {
  return text.replace(/[`\s_]/g, '')
}

/** The Markdown tables of a file, each as its rows whose first cell is `` `name` ``: name -> the second cell. */
function tablesOf (file: string): Array<Map<string, string>> {
  const tables: Array<Map<string, string>> = []
  let current: Map<string, string> | undefined
  for (const { line } of proseLines(read(file))) {
    const cells = /^\s*\|(.*)\|\s*$/.exec(line)?.[1]?.split(/(?<!\\)\|/).map((cell) => cell.trim())
    if (cells === undefined) {
      current = undefined
      continue
    }
    if (current === undefined) tables.push(current = new Map())
    const name = cells[0] !== undefined ? /^`([^`]+)`$/.exec(cells[0])?.[1] : undefined
    if (name !== undefined && cells[1] !== undefined) current.set(name, cells[1])
  }
  return tables
}

/** The table of a file that names the most of these options: their options table. */
function optionsTable (file: string, names: string[]): Map<string, string> {
  const score = (table: Map<string, string>): number => names.filter((name) => table.has(name)).length
  const best = tablesOf(file).reduce<Map<string, string> | undefined>((top, table) => top === undefined || score(table) > score(top) ? table : top, undefined)
  assert.ok(best !== undefined, `${file} has an options table`)
  return best
}

const WITHOUT_DEFAULT = ['required', '—', 'none', 'undefined']

for (const { source, interfaceName, docs } of [
  { source: 'src/plugin/options.ts', interfaceName: 'MemcachedSessionOptions', docs: 'README.md' },
  { source: 'src/protocol/client.ts', interfaceName: 'MemcachedClientOptions', docs: 'docs/client.md' }
]) {
  test(`every option of ${interfaceName} is in the options table of ${docs} with its default`, () => {
    const options = declaredOptions(source, interfaceName)
    assert.ok(options.length >= 8, `read ${options.length} options from ${source}`)
    const table = optionsTable(docs, options.map((option) => option.name))
    const problems: string[] = []
    for (const { name, defaultValue } of options) {
      const cell = table.get(name)
      if (cell === undefined) {
        // An object option documented attribute by attribute (cookie.*) needs no row of its own.
        if (!options.some((option) => option.name.startsWith(`${name}.`))) problems.push(`${name}: no row`)
        continue
      }
      const documented = normalize(cell)
      const ok = defaultValue === undefined || defaultValue === 'none'
        ? WITHOUT_DEFAULT.some((word) => documented.startsWith(word))
        : documented.startsWith(defaultValue) && !/[\w.]/.test(documented.charAt(defaultValue.length))
      if (!ok) problems.push(`${name}: the docs say ${cell}, the TSDoc says ${defaultValue ?? 'no default'}`)
    }
    assert.deepEqual(problems, [])
  })
}
