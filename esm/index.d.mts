export * from '../dist/index.js'
import { memcachedSession } from '../dist/index.js'
export default memcachedSession
