// The soak as CI runs it: 2 minutes. `npm run test:soak` runs the 5-minute one.
import { describe, it } from 'node:test'
import { soak } from '../helpers/soak'

describe('soak', () => {
  it('2 minutes at 200 req/s with a restart of each component: nothing unaccounted, memory flat', async () => {
    await soak(Number(process.env.RELAYQ_SOAK_SECONDS ?? 120))
  })
})
