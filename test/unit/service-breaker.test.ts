import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ServiceBreakers, type BreakerState } from '../../src/enqueuer/service-breaker'

function breakers (): { b: ServiceBreakers, clock: { now: number }, moves: BreakerState[] } {
  const clock = { now: 0 }
  const moves: BreakerState[] = []
  const b = new ServiceBreakers({ enabled: true, threshold: 3, cooldownMs: 5000 }, (_s, state) => moves.push(state), () => clock.now)
  return { b, clock, moves }
}

describe('service breaker', () => {
  it('opens after threshold reply timeouts, probes after the cool-down, and any reply closes it', () => {
    const { b, clock, moves } = breakers()
    for (let i = 0; i < 3; i++) b.failure('s')
    assert.equal(b.admit('s'), 5)
    clock.now = 5000
    assert.equal(b.admit('s'), 'probe')
    assert.equal(typeof b.admit('s'), 'number', 'one probe at a time')
    b.success('s')
    assert.equal(b.admit('s'), 'pass')
    assert.deepEqual(moves, ['open', 'half_open', 'closed'])
  })

  it('a probe with no verdict is waited on for one cool-down, then the next request probes (the service may be back)', () => {
    const { b, clock } = breakers()
    for (let i = 0; i < 3; i++) b.failure('s')
    clock.now = 5000
    assert.equal(b.admit('s'), 'probe')
    clock.now = 9999
    assert.equal(typeof b.admit('s'), 'number')
    clock.now = 10_000
    assert.equal(b.admit('s'), 'probe', 'the hung probe no longer holds the service shut')
    b.success('s')
    assert.equal(b.stateOf('s'), 'closed')
  })

  it('a released probe (client gone) lets the next request probe at once', () => {
    const { b, clock } = breakers()
    for (let i = 0; i < 3; i++) b.failure('s')
    clock.now = 5000
    assert.equal(b.admit('s'), 'probe')
    b.release('s')
    assert.equal(b.admit('s'), 'probe')
  })
})
