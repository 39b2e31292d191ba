// The reprocessor's commands. Every move is publisher-confirmed before the
// dead-letter copy is acked, so a crash mid-way duplicates at most, never loses.
import { createReadStream, createWriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Channel, ChannelModel, ConfirmChannel, GetMessage, Options } from 'amqplib'
import { deadLetterQueue, requestQueue } from '../amqp/topology'
import { replayCopy, type Publishable } from '../amqp/wire'
import { displayBody, displayHeaders, forEachMessage, reasonOf, summarize, type Summary } from './inspect'

export interface Selection {
  readonly limit: number
  readonly id: string | null
  readonly reason: string | null
}

export interface Tool {
  readonly conn: ChannelModel
  readonly service: string
  readonly out: (line: string) => void
}

/** A queue the command needs does not exist; the message says which and where its name came from. */
export class MissingQueueError extends Error {
  constructor (readonly queue: string, why: string) {
    super(`queue ${queue} does not exist${why === '' ? '' : ` (${why})`}`)
    this.name = 'MissingQueueError'
  }
}

/** checkQueue, with the broker's 404 (amqplib's err.code; the channel is closed by it) turned into MissingQueueError. */
async function requireQueue (ch: Channel, queue: string, why: string): Promise<{ messageCount: number }> {
  try {
    return await ch.checkQueue(queue)
  } catch (err) {
    if ((err as { code?: unknown }).code === 404) throw new MissingQueueError(queue, why)
    throw err
  }
}

function notDeclared (service: string): string {
  return `is ${service} the right service? A dequeuer of that service declares it`
}

async function channel (conn: ChannelModel): Promise<Channel> {
  const ch = await conn.createChannel()
  ch.on('error', () => {})
  return ch
}

/**
 * Reads the DLQ once; everything got is given back when `fn` is done (or
 * fails). `depth` is the count at the start: a pass never reads further, so
 * messages published to the queue meanwhile (even by this command) are not
 * visited twice.
 */
async function withQueueRead<T> (tool: Tool, fn: (ch: Channel, queue: string, depth: number) => Promise<T>): Promise<T> {
  const queue = deadLetterQueue(tool.service)
  const ch = await channel(tool.conn)
  let messageCount: number
  try {
    messageCount = (await requireQueue(ch, queue, notDeclared(tool.service))).messageCount
  } catch (err) {
    await ch.close().catch(() => {})
    throw err
  }
  try {
    return await fn(ch, queue, messageCount)
  } finally {
    ch.nackAll(true)
    await ch.close().catch(() => {})
  }
}

export interface Stats {
  readonly queue: string
  readonly depth: number
  readonly oldestAgeSeconds: number | null
  readonly byReason: Record<string, number>
}

export async function stats (tool: Tool): Promise<Stats> {
  return withQueueRead(tool, async (ch, queue, depth) => {
    const byReason: Record<string, number> = {}
    let oldest: number | null = null
    const seen = await forEachMessage(ch, queue, depth, (m) => {
      const s = summarize(m)
      byReason[s.reason] = (byReason[s.reason] ?? 0) + 1
      if (s.ageSeconds !== null && (oldest === null || s.ageSeconds > oldest)) oldest = s.ageSeconds
    })
    return { queue, depth: seen, oldestAgeSeconds: oldest, byReason }
  })
}

export async function list (tool: Tool, sel: Selection): Promise<Summary[]> {
  return withQueueRead(tool, async (ch, queue, depth) => {
    const out: Summary[] = []
    await forEachMessage(ch, queue, depth, (m) => {
      const s = summarize(m)
      if (matches(m, s, sel) && out.length < sel.limit) out.push(s)
    })
    return out
  })
}

export interface Detail extends Summary {
  readonly headers: Record<string, unknown>
  readonly properties: Record<string, unknown>
  readonly body?: { encoding: 'utf8' | 'base64', body: string }
}

export async function peek (tool: Tool, sel: Selection, withBody: boolean, showSecrets: boolean): Promise<Detail[]> {
  return withQueueRead(tool, async (ch, queue, depth) => {
    const out: Detail[] = []
    await forEachMessage(ch, queue, depth, (m) => {
      const s = summarize(m)
      if (!matches(m, s, sel) || out.length >= sel.limit) return
      const { headers: _h, ...properties } = m.properties
      out.push({ ...s, headers: displayHeaders(m, showSecrets), properties, ...(withBody ? { body: displayBody(m.content) } : {}) })
    })
    return out
  })
}

export interface MoveResult { readonly moved: number, readonly kept: number, readonly failed: number }

/** Republishes selected dead letters to the request queue (or `to`), attempts reset; acks each once confirmed. */
export async function replay (tool: Tool, sel: Selection, to: string | null): Promise<MoveResult> {
  const target = to ?? requestQueue(tool.service)
  const publisher = await confirmChannel(tool.conn)
  try {
    await requireQueue(publisher, target, to === null ? notDeclared(tool.service) : 'named by --to')
    return await withQueueRead(tool, async (ch, queue, depth) => {
      let moved = 0
      let kept = 0
      let failed = 0
      await forEachMessage(ch, queue, depth, async (m) => {
        if (moved >= sel.limit || !matches(m, summarize(m), sel)) {
          kept++
          return
        }
        try {
          await publishConfirmed(publisher, target, replayCopy(m))
          ch.ack(m)
          moved++
        } catch {
          failed++
        }
      })
      return { moved, kept, failed }
    })
  } finally {
    await publisher.close().catch(() => {})
  }
}

export async function purge (tool: Tool): Promise<number> {
  const ch = await channel(tool.conn)
  try {
    const queue = deadLetterQueue(tool.service)
    await requireQueue(ch, queue, notDeclared(tool.service))
    return (await ch.purgeQueue(queue)).messageCount
  } finally {
    await ch.close().catch(() => {})
  }
}

/** One JSON object per line: properties (headers included) and the body in base64; nothing is removed. */
export async function exportTo (tool: Tool, file: string): Promise<number> {
  const stream = createWriteStream(file, { flags: 'wx', mode: 0o600 })
  try {
    return await withQueueRead(tool, async (ch, queue, depth) => forEachMessage(ch, queue, depth, async (m) => {
      const line = JSON.stringify({ properties: toJson(m.properties), content: m.content.toString('base64') }) + '\n'
      if (!stream.write(line)) await new Promise<void>((resolve) => stream.once('drain', () => resolve()))
    }))
  } finally {
    await new Promise<void>((resolve, reject) => {
      stream.once('error', reject)
      stream.end(() => resolve())
    })
  }
}

/** Publishes every line of an export (confirmed) to the DLQ, or to `to`. */
export async function importFrom (tool: Tool, file: string, to: string | null): Promise<number> {
  const target = to ?? deadLetterQueue(tool.service)
  const publisher = await confirmChannel(tool.conn)
  try {
    await requireQueue(publisher, target, to === null ? notDeclared(tool.service) : 'named by --to')
    let n = 0
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
      if (line.trim() === '') continue
      const record = JSON.parse(line) as { properties: Record<string, unknown>, content: string }
      const props = fromJson(record.properties) as Options.Publish & Record<string, unknown>
      const options: Options.Publish = {}
      for (const key of ['headers', 'correlationId', 'replyTo', 'messageId', 'timestamp', 'contentType', 'contentEncoding', 'type', 'appId', 'priority'] as const) {
        if (props[key] !== undefined && props[key] !== null) (options as Record<string, unknown>)[key] = props[key]
      }
      options.persistent = true
      await publishConfirmed(publisher, target, { content: Buffer.from(record.content, 'base64'), options })
      n++
    }
    return n
  } finally {
    await publisher.close().catch(() => {})
  }
}

function matches (m: GetMessage, s: Summary, sel: Selection): boolean {
  if (sel.id !== null && s.id !== sel.id && m.properties.correlationId !== sel.id) return false
  if (sel.reason !== null && reasonOf((m.properties.headers ?? {})) !== sel.reason) return false
  return true
}

async function confirmChannel (conn: ChannelModel): Promise<ConfirmChannel> {
  const ch = await conn.createConfirmChannel()
  ch.on('error', () => {})
  return ch
}

/** Mandatory and confirmed: a message that no queue took (a return) counts as a failure, not a success. */
function publishConfirmed (ch: ConfirmChannel, queue: string, message: Publishable): Promise<void> {
  return new Promise((resolve, reject) => {
    let returned = false
    const onReturn = (): void => { returned = true }
    ch.once('return', onReturn)
    ch.publish('', queue, message.content, { ...message.options, mandatory: true }, (err: unknown) => {
      ch.off('return', onReturn)
      if (err !== null && err !== undefined) reject(err)
      else if (returned) reject(new Error(`no queue ${queue} took the message`))
      else resolve()
    })
  })
}

// Header tables can hold Buffers; JSON keeps them as base64 so an import restores them.
function toJson (value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { $buffer: value.toString('base64') }
  if (Array.isArray(value)) return value.map(toJson)
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]))
  return value
}

function fromJson (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJson)
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>
    if (typeof o.$buffer === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$buffer, 'base64')
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fromJson(v)]))
  }
  return value
}
