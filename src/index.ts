export { MemcachedClient } from './protocol/client.js'
export type { MemcachedClientOptions, StoreOptions, CasItem, CasResult } from './protocol/client.js'
export { MemcachedError } from './protocol/errors.js'
export type { MemcachedErrorCode, MemcachedErrorOptions } from './protocol/errors.js'
