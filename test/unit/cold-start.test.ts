// The cold-start ledger without a broker: the bound per service, the release
// with the request's ticket, the first-waiting signal the scaler pushes on,
// and the time recorded once a consumer shows up.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Admission } from '../../src/enqueuer/admission'
import { ColdStart } from '../../src/enqueuer/cold-start'
import type { QueueState } from '../../src/enqueuer/queue-check'
import { waitFor } from '../helpers/wait'

function setup (maxWaiting: number): { cold: ColdStart, admission: Admission, state: { consumers: number }, observed: number[], seen: string[] } {
  const state = { consumers: 0 }
  const observed: number[] = []
  const seen: string[] = []
  const cold = new ColdStart({
    maxWaiting,
    state: (): QueueState => ({ exists: true, consumers: state.consumers }),
    observe: (_s, seconds) => observed.push(seconds),
    sawConsumer: (q) => seen.push(q),
  })
  return { cold, admission: new Admission(100), state, observed, seen }
}

describe('cold start', () => {
  it('bounds the waiting requests per service, and frees a place when a request ends', () => {
    const { cold, admission } = setup(2)
    const tickets = [admission.admit('a'), admission.admit('a'), admission.admit('a'), admission.admit('b')].map((t) => {
      assert.notEqual(typeof t, 'string')
      return t as Exclude<typeof t, string>
    })
    const [t1, t2, t3, t4] = tickets as [typeof tickets[number], typeof tickets[number], typeof tickets[number], typeof tickets[number]]
    assert.notEqual(cold.admit('a', 'a_requests', t1, performance.now()), 'full')
    assert.notEqual(cold.admit('a', 'a_requests', t2, performance.now()), 'full')
    assert.equal(cold.admit('a', 'a_requests', t3, performance.now()), 'full')
    assert.notEqual(cold.admit('b', 'b_requests', t4, performance.now()), 'full', 'another service has its own bound')
    assert.deepEqual([...cold.counts()], [['a', 2], ['b', 1]])
    t1.release()
    assert.equal(cold.waiting('a'), 1)
    assert.notEqual(cold.admit('a', 'a_requests', t3, performance.now()), 'full')
    for (const t of tickets) t.release()
    assert.equal(cold.waiting('a'), 0)
    assert.deepEqual([...cold.counts()], [], 'nothing kept for a service nobody waits for')
    cold.close()
  })

  it('tells its listeners of the first waiting request only', () => {
    const { cold, admission } = setup(10)
    const heard: string[] = []
    const off = cold.onWaiting((s) => heard.push(s))
    const t1 = admission.admit('a') as Exclude<ReturnType<Admission['admit']>, string>
    const t2 = admission.admit('a') as Exclude<ReturnType<Admission['admit']>, string>
    cold.admit('a', 'a_requests', t1, performance.now())
    cold.admit('a', 'a_requests', t2, performance.now())
    assert.deepEqual(heard, ['a'])
    off()
    t1.release()
    t2.release()
    cold.close()
  })

  it('records the wait once the poll sees a consumer, and the reply reports it', async () => {
    const { cold, admission, state, observed, seen } = setup(10)
    const t = admission.admit('a') as Exclude<ReturnType<Admission['admit']>, string>
    const w = cold.admit('a', 'a_requests', t, performance.now() - 1000)
    assert.ok(w !== 'full')
    assert.equal(w.waiting, true)
    state.consumers = 1
    await waitFor(() => !w.waiting, { what: 'the poll to see the consumer' })
    assert.equal(cold.waiting('a'), 0, 'no longer counted as waiting')
    assert.equal(observed.length, 1)
    assert.ok((observed[0] ?? 0) >= 1)
    assert.deepEqual(seen, ['a_requests'])
    const ms = w.answered()
    assert.ok(ms >= 1000 && ms < 1000 + 5000, `${ms}`)
    t.release()
    cold.close()
  })

  it('a reply before the poll: the reply itself proves the consumer', () => {
    const { cold, admission, observed } = setup(10)
    const t = admission.admit('a') as Exclude<ReturnType<Admission['admit']>, string>
    const w = cold.admit('a', 'a_requests', t, performance.now() - 50)
    assert.ok(w !== 'full')
    assert.ok(w.answered() >= 50)
    assert.equal(observed.length, 1)
    assert.equal(w.waiting, false)
    t.release()
    cold.close()
  })
})
