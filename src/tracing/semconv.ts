// Every span name and attribute key relayq emits, in one place: the messaging
// semantic conventions are still "Development", so a rename upstream is one
// edit here. Followed: OpenTelemetry semantic conventions v1.27.0, messaging
// spans (`{operation} {destination}` names, messaging.operation.name/type) and
// the RabbitMQ page, and the HTTP server/client span conventions.
// Two known differences: that RabbitMQ page sets messaging.destination.name to
// the exchange, "" for the default exchange relayq always publishes to, which
// would name every span alike, so relayq puts the queue (the routing key)
// there; and the registry has since renamed messaging.rabbitmq.* to rabbitmq.*
// (kept as below until the messaging conventions are stable).
export const SEMCONV_VERSION = '1.27.0'

/** The headers that carry the W3C trace context on a message: the keys @opentelemetry/instrumentation-amqplib uses. */
export const TRACEPARENT = 'traceparent'
export const TRACESTATE = 'tracestate'

export const A = {
  // messaging
  system: 'messaging.system',
  operationName: 'messaging.operation.name',
  operationType: 'messaging.operation.type',
  destinationName: 'messaging.destination.name',
  destinationTemporary: 'messaging.destination.temporary',
  routingKey: 'messaging.rabbitmq.destination.routing_key',
  deliveryTag: 'messaging.rabbitmq.message.delivery_tag',
  consumerGroup: 'messaging.consumer.group.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  bodySize: 'messaging.message.body.size',
  // http
  method: 'http.request.method',
  status: 'http.response.status_code',
  route: 'http.route',
  urlPath: 'url.path',
  urlFull: 'url.full',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  clientAddress: 'client.address',
  // errors
  errorType: 'error.type',
  // relayq's own (no convention exists for these)
  queueWaitMs: 'relayq.queue.wait_ms',
  attempt: 'relayq.delivery.attempt',
  outcome: 'relayq.outcome',
  deadLetterReason: 'relayq.dead_letter.reason',
  service: 'relayq.service',
  jobId: 'relayq.job.id',
} as const

export const SYSTEM = 'rabbitmq'

/** Span names: `{operation} {destination}` for messaging, the method for HTTP (no route template is known). */
export const N = {
  send: (destination: string) => `send ${destination}`,
  process: (destination: string) => `process ${destination}`,
  replyWait: 'wait reply',
  http: (method: string) => method,
} as const

/** The destination name of direct reply-to (a temporary, per-channel destination). */
export const TEMPORARY = '(temporary)'

/** relayq.outcome values of a CONSUMER process span. */
export type ProcessOutcome = 'replied' | 'streamed' | 'stream_cut' | 'error_replied' | 'retried' | 'dead_lettered' | 'expired' | 'requeued' | 'recounted' | 'returned'

/**
 * Written on a message by an enqueuer with tracing on: the publish time in
 * epoch ms (the AMQP timestamp property has whole seconds only), from which the
 * dequeuer measures the queue wait. An x-relayq- header: never forwarded to the service.
 */
export const SENT_AT = 'x-relayq-sent-at'
