// undici's Pool without the rest of undici (fetch, websockets, caches, mocks):
// the bundle ships in every pod, and importing the package root would add
// about 300 KiB relayq never runs. The path is pinned with the version.
declare module 'undici/lib/dispatcher/pool' {
  import type { Pool } from 'undici'
  const PoolClass: typeof Pool
  export = PoolClass
}
