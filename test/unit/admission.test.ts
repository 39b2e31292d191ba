import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Admission, Ticket } from '../../src/enqueuer/admission'

function ticket (a: Admission, service = 'svc'): Ticket {
  const t = a.admit(service)
  assert.ok(t instanceof Ticket, 'expected a ticket')
  return t
}

describe('admission ticket', () => {
  it('takes one slot and gives it back once, however often release() is called', () => {
    const a = new Admission(2)
    const t = ticket(a)
    assert.equal(a.inflight, 1)
    t.release()
    t.release()
    t.release()
    assert.equal(a.inflight, 0)
    assert.equal(a.inflightOf('svc'), 0)
  })

  it('refuses past the limit, and a released slot admits again', () => {
    const a = new Admission(2)
    const t1 = ticket(a)
    ticket(a, 'other')
    assert.equal(a.admit('svc'), 'RQ_ERR_OVERLOADED')
    t1.release()
    ticket(a)
    assert.equal(a.inflight, 2)
  })

  it('runs what the request holds on release, except what it chose to keep', () => {
    const a = new Admission(5)
    const t = ticket(a)
    const undone: string[] = []
    t.hold(() => undone.push('probe'))
    const keepJob = t.hold(() => undone.push('job'))
    keepJob()
    t.release()
    t.release()
    assert.deepEqual(undone, ['probe'], 'the kept job is not abandoned; the probe is released once')
  })

  it('undoes at once what is held after release (a late path cannot leak either)', () => {
    const a = new Admission(5)
    const t = ticket(a)
    t.release()
    let undone = 0
    t.hold(() => undone++)
    assert.equal(undone, 1)
    assert.equal(a.inflight, 0)
  })

  it('closes intake and resolves idle() when the last request ends', async () => {
    const a = new Admission(5)
    const t1 = ticket(a)
    const t2 = ticket(a)
    a.close()
    assert.equal(a.draining, true)
    assert.equal(a.admit('svc'), 'RQ_ERR_DRAINING')
    let idle: boolean | null = null
    const waiting = a.idle(60_000).then((v) => { idle = v })
    t1.release()
    await Promise.resolve()
    assert.equal(idle, null, 'one request is still in flight')
    t2.release()
    await waiting
    assert.equal(idle, true)
  })

  it('idle() gives up after its timeout', async () => {
    const a = new Admission(5)
    ticket(a)
    assert.equal(await a.idle(10), false)
    assert.equal(await new Admission(1).idle(10), true, 'nothing in flight: idle at once')
  })
})

describe('per-service share', () => {
  it('refuses a service past its share while others are still admitted; a freed slot admits it again', () => {
    const a = new Admission(10, 3)
    const held = [ticket(a, 'silent'), ticket(a, 'silent'), ticket(a, 'silent')]
    assert.equal(a.admit('silent'), 'RQ_ERR_SERVICE_OVERLOADED')
    assert.equal(a.inflight, 3, 'a refusal takes no slot')
    ticket(a, 'other')
    held[0]!.release()
    ticket(a, 'silent')
    assert.equal(a.inflightOf('silent'), 3)
  })
})
