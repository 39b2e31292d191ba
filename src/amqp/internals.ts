// Every reach into amqplib's internals on a new connection, in one place.
// Each one checks the shape it relies on and reports false, changing nothing,
// when an amqplib upgrade moved it; relayq then runs on amqplib's own code and
// says so here. test/integration/amqplib-internals.test.ts fails loudly when
// the pinned amqplib stops matching any of them. (The publish encoder,
// publish.ts, checks each channel the same way; publish.test.ts holds it.)
import type { ChannelModel } from 'amqplib'
import type { Logger } from 'pino'
import { coalesceWrites } from './coalesce'
import { installFrameGuard } from './frame-guard'

export interface InternalsInstalled {
  /** Incoming header tables checked before amqplib decodes them (frame-guard.ts). */
  readonly frameGuard: boolean
  /** Outgoing frames gathered into one write per tick (coalesce.ts). */
  readonly coalesce: boolean
}

export function adoptConnection (model: ChannelModel, logger: Logger, connection: string): InternalsInstalled {
  const installed = { frameGuard: installFrameGuard(model), coalesce: coalesceWrites(model) }
  if (!installed.frameGuard) {
    logger.error({ connection }, 'amqplib internals changed: incoming header tables are not guarded, a deeply nested one closes this connection')
  }
  if (!installed.coalesce) logger.warn({ connection }, 'amqplib internals changed: writes are not coalesced (slower, still correct)')
  return installed
}
