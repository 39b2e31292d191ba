// Every queue and exchange name relayq uses, and every argument it declares
// them with. ProxyMQ's name `{service}_requests` is kept; the rest hang off it.
//
//   {service}_requests              request queue (DLX -> relayq.dlx)
//   {service}_requests.retry.{ms}   one delay queue per retry delay; TTL, then dead-lettered back
//   relayq.dlx (direct)  --{service}_requests-->  {service}_requests.dlq
import type { Channel, Options } from 'amqplib'
import type { QueueType } from '../config/types'
import { FatalSetupError } from './connection'
import { classify } from './errors'

export const DEAD_LETTER_EXCHANGE = 'relayq.dlx'

export function requestQueue (service: string): string {
  return `${service}_requests`
}

export function deadLetterQueue (service: string): string {
  return `${service}_requests.dlq`
}

export function retryQueue (service: string, delayMs: number): string {
  return `${service}_requests.retry.${delayMs}`
}

export interface TopologySettings {
  readonly service: string
  readonly queueType: QueueType
  readonly declareQueues: boolean
  readonly deliveryLimit: number
  readonly messageTtlMs: number
  /** x-max-length of the request queue, with reject-publish; 0: none (queues declared before it existed match). */
  readonly maxLength: number
}

type Args = Record<string, string | number>

export function requestQueueArgs (s: TopologySettings): Args {
  const args: Args = { 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE }
  if (s.messageTtlMs > 0) args['x-message-ttl'] = s.messageTtlMs
  if (s.queueType === 'quorum') Object.assign(args, quorumArgs(s.deliveryLimit))
  // reject-publish, not the default drop-head: a full queue refuses the newest
  // (its publisher hears a nack and answers 503) instead of dropping the oldest unseen.
  if (s.maxLength > 0) Object.assign(args, { 'x-max-length': s.maxLength, 'x-overflow': 'reject-publish' })
  return args
}

function quorumArgs (deliveryLimit: number): Args {
  return {
    'x-queue-type': 'quorum',
    // Always set: from RabbitMQ 4.0 quorum queues default to 20 and, without a
    // dead-letter target, drop what passes it.
    'x-delivery-limit': deliveryLimit,
    // At-least-once dead-lettering (3.10+) needs reject-publish overflow.
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  }
}

/**
 * Operators inspect the dead-letter queue by getting messages and giving
 * them back; quorum queues count each give-back as a delivery and, from
 * RabbitMQ 4.0, drop a message past 20 of them. The limit is set out of reach.
 */
export const DEAD_LETTER_QUEUE_DELIVERY_LIMIT = 1_000_000

export function deadLetterQueueArgs (s: Pick<TopologySettings, 'queueType'>): Args {
  return s.queueType === 'quorum' ? { 'x-queue-type': 'quorum', 'x-delivery-limit': DEAD_LETTER_QUEUE_DELIVERY_LIMIT } : {}
}

export function retryQueueArgs (s: TopologySettings, delayMs: number): Args {
  return {
    'x-message-ttl': delayMs,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': requestQueue(s.service),
    ...(s.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {}),
  }
}

/** The `rabbitmqctl set_policy` line that replaces the request queue's arguments when DEQUEUER_DECLARE_QUEUES=false. */
export function policyCommand (s: TopologySettings): string {
  const definition: Record<string, string | number> = { 'dead-letter-exchange': DEAD_LETTER_EXCHANGE }
  if (s.queueType === 'quorum') {
    definition['delivery-limit'] = s.deliveryLimit
    definition['dead-letter-strategy'] = 'at-least-once'
    definition.overflow = 'reject-publish'
  }
  if (s.messageTtlMs > 0) definition['message-ttl'] = s.messageTtlMs
  if (s.maxLength > 0) Object.assign(definition, { 'max-length': s.maxLength, overflow: 'reject-publish' })
  const pattern = `^${s.service.replace(/\./g, '\\.')}_requests$`
  return `rabbitmqctl set_policy relayq-${s.service} '${pattern}' '${JSON.stringify(definition)}' --apply-to queues`
}

/**
 * Declares the service's queues. Each declare runs on a throwaway channel: a
 * PRECONDITION_FAILED closes the channel it happened on, and the message it
 * carries is turned into one that names the queue, the argument, both values
 * and the fix.
 */
export async function declareServiceTopology (open: () => Promise<Channel>, s: TopologySettings, retryDelays: readonly number[]): Promise<void> {
  const rq = requestQueue(s.service)
  await withChannel(open, async (ch) => {
    await ch.assertExchange(DEAD_LETTER_EXCHANGE, 'direct', { durable: true })
  })
  if (s.declareQueues) {
    await declareQueue(open, rq, { durable: true, arguments: requestQueueArgs(s) }, s)
  } else {
    await ensureQueueExists(open, rq, s)
  }
  const dlq = deadLetterQueue(s.service)
  await declareQueue(open, dlq, { durable: true, arguments: deadLetterQueueArgs(s) }, s)
  await withChannel(open, async (ch) => {
    await ch.bindQueue(dlq, DEAD_LETTER_EXCHANGE, rq)
  })
  for (const delay of new Set(retryDelays)) {
    await declareQueue(open, retryQueue(s.service, delay), { durable: true, arguments: retryQueueArgs(s, delay) }, s)
  }
}

async function declareQueue (open: () => Promise<Channel>, name: string, options: Options.AssertQueue, s: TopologySettings): Promise<void> {
  try {
    await withChannel(open, async (ch) => { await ch.assertQueue(name, options) })
  } catch (err) {
    throw explainDeclareError(err as Error, name, s)
  }
}

/** With DEQUEUER_DECLARE_QUEUES=false: use the queue as it is; create it bare (only its type) if missing. */
async function ensureQueueExists (open: () => Promise<Channel>, name: string, s: TopologySettings): Promise<void> {
  try {
    await withChannel(open, async (ch) => { await ch.checkQueue(name) })
    return
  } catch (err) {
    if (classify(err).kind !== 'not_found') throw err
  }
  const args: Args = s.queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {}
  await declareQueue(open, name, { durable: true, arguments: args }, s)
}

async function withChannel<T> (open: () => Promise<Channel>, fn: (ch: Channel) => Promise<T>): Promise<T> {
  const ch = await open()
  let closed = false
  ch.on('error', () => {})
  ch.on('close', () => { closed = true })
  try {
    return await fn(ch)
  } finally {
    if (!closed) await ch.close().catch(() => {})
  }
}

const INEQUIVALENT = /inequivalent arg '([^']+)' for queue '([^']+)' in vhost '[^']*': received (.+?) but current is ([^"]+)/

/** The broker says "the value 'x' of type 'longstr'" or "none"; the operator wants 'x' or "not set". */
function brokerValue (text: string): string {
  const m = /^the value (.+) of type '[^']+'$/.exec(text.trim())
  if (m !== null) return m[1] as string
  return text.trim() === 'none' ? 'not set' : text.trim()
}

export function explainDeclareError (err: Error, queue: string, s: TopologySettings): Error {
  if (classify(err).kind !== 'precondition_failed') return err
  // A 406 on a declare is an argument mismatch; its text only supplies the names and values for the explanation.
  const m = INEQUIVALENT.exec(err.message)
  if (m === null) return err
  const [, arg, , wanted, current] = m as unknown as [string, string, string, string, string]
  return new FatalSetupError(
    `queue '${queue}' exists with ${arg} = ${brokerValue(current)}, but relayq declares it with ${arg} = ${brokerValue(wanted)}. ` +
    'Queue arguments cannot change in place. Either delete the queue once it is empty ' +
    `(rabbitmqctl delete_queue ${queue}) and let relayq declare it, ` +
    'or make relayq match it (DEQUEUER_QUEUE_TYPE, DEQUEUER_DELIVERY_LIMIT, MESSAGE_TTL_MS, DEQUEUER_MAX_LENGTH), ' +
    `or set DEQUEUER_DECLARE_QUEUES=false and manage the arguments with a policy: ${policyCommand(s)}`,
  )
}
