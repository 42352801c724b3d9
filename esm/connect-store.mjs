// ES module entry of fastify-memcached-session/connect-store: re-exports the
// one CommonJS build, so `import` and `require` share the same classes.
import lib from '../dist/plugin/connect-store.js'

export const { connectStore } = lib
export default lib.default
