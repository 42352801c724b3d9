export { MemcachedError } from './protocol/errors.js'
export type { MemcachedErrorCode, MemcachedErrorOptions } from './protocol/errors.js'
