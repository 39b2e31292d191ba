// One delivery's life as a straight line of steps that return values:
//   prepare (checks) → Prepared | Outcome
//   call (single or batch strategy) → one result per message
//   decide (outcome.ts) → Outcome
//   settle (publish, ack, books) — the same for every path.
// A suspect runs the same line, alone (isolation.ts). Whatever happens, a
// delivery is settled exactly once, and only after whatever it publishes is out.
import type { RecordedAnswers } from './answers'
import { OPEN, type CallResult } from './breaker'
import type { CallStrategy } from './call'
import type { Delivery } from './consumer'
import type { Inflight } from './inflight'
import type { Isolation } from './isolation'
import { decideAfterCall, type Outcome } from './outcome'
import { deadLetter, isPrepared, safePrepare, type PrepareDeps, type Prepared } from './prepare'
import { settle, type SettleDeps } from './settle'

export interface PipelineDeps extends PrepareDeps, SettleDeps {
  readonly strategy: CallStrategy
  readonly isolation: Isolation
  readonly inflight: Inflight
  /** True when the delivery came through the consumer of prefetch one, alone: a suspect may run. */
  readonly deliveredOneAtATime: (d: Delivery) => boolean
  /** Answers to idempotent requests (DEQUEUER_IDEMPOTENCY_REDIS_URL), or null. */
  readonly answers: RecordedAnswers | null
}

/** The delivery handler given to the consumer. */
export function createPipeline (deps: PipelineDeps): (d: Delivery) => void {
  const { strategy, isolation } = deps
  const run = async (p: Prepared, call: (p: Prepared) => Promise<CallResult>): Promise<void> => {
    let result: CallResult | null = null
    let outcome: Outcome
    try {
      // An idempotent request answered before (its ack was lost) is answered from the record, not called again.
      const recorded = deps.answers === null ? null : await deps.answers.lookup(p.d.msg)
      const span = recorded !== null || deps.tracing === null ? null : deps.tracing.calling(p)
      result = recorded ?? await call(p)
      if (span !== null) deps.tracing!.called(span, result)
      // A call cut off at the caller's deadline ends at the deadline, whatever the clock says (timers fire early or late).
      const cutOff = result !== OPEN && result.kind === 'error' && result.code === 'RQ_ERR_DOWNSTREAM_TIMEOUT' && p.forward.deadline === p.req.deadline
      outcome = decideAfterCall(result, p.attempt, deps.cfg, p.req.deadline, cutOff ? Math.max(Date.now(), p.forward.deadline) : Date.now())
      // Recorded before the reply and the ack, so a crash after this point costs no second call; only an answer
      // that ends the message (a status to be retried is not one: its retry must call the service again).
      if (recorded === null && deps.answers !== null && result !== OPEN && outcome.kind === 'reply') await deps.answers.record(p.d.msg, result)
    } catch (err) {
      deps.logger.error({ err: (err as Error).stack, correlationId: p.req.correlationId }, 'unexpected error calling the service')
      outcome = deadLetter('malformed', 'RQ_ERR_MALFORMED_MESSAGE', `relayq could not process the message: ${(err as Error).message}`)
    }
    await settle(deps, { d: p.d, outcome, req: p.req, result })
  }
  const callAlone = (p: Prepared): Promise<CallResult> => strategy.callAlone(p)
  const call = (p: Prepared): Promise<CallResult> => strategy.call(p)
  return (d) => {
    deps.inflight.enter()
    if (deps.tracing !== null) deps.tracing.received(d)
    const checked = safePrepare(deps, d)
    if (!isPrepared(checked)) void settle(deps, { d, outcome: checked, req: null, result: null })
    // A suspect runs alone: if it crashes the dequeuer again, no other message is caught with it.
    else if (checked.suspect) void isolation.runAlone(() => run(checked, callAlone), () => deps.deliveredOneAtATime(d), () => settle(deps, { d, outcome: { kind: 'requeue', reason: 'isolating' }, req: checked.req, result: null }))
    else void run(checked, call)
  }
}
