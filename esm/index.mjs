// ES module entry: re-exports the one CommonJS build, so `import` and
// `require` share the same classes (instanceof MemcachedError holds across both).
import lib from '../dist/index.js'

export const { memcachedSession, MemcachedClient, MemcachedError, MemcachedStore, MemoryStore } = lib
export default lib.default
