import { connectStore } from '../dist/plugin/connect-store.js'

export * from '../dist/plugin/connect-store.js'
export default connectStore
