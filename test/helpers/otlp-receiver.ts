// An OTLP/HTTP trace receiver run by the test: it takes POST /v1/traces in
// protobuf or JSON, decodes the spans (protobuf by a small wire-format reader,
// so the test trusts no OpenTelemetry code to read what OpenTelemetry code
// wrote) and can be told to fail or stall.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly name: string
  /** 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  readonly kind: number
  readonly startNs: bigint
  readonly endNs: bigint
  readonly attributes: Record<string, string | number | boolean>
  /** 0 unset, 1 ok, 2 error */
  readonly status: number
  readonly serviceName: string
  readonly encoding: 'protobuf' | 'json'
}

export type Mode = { kind: 'ok' } | { kind: 'status', status: number } | { kind: 'stall', ms: number }

export interface Receiver {
  readonly url: string
  readonly spans: ReceivedSpan[]
  /** Export requests received, whatever was answered. */
  requests: () => number
  mode: (m: Mode) => void
  close: () => Promise<void>
}

export const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const

export async function startReceiver (initial: Mode = { kind: 'ok' }): Promise<Receiver> {
  let mode = initial
  let requests = 0
  const spans: ReceivedSpan[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      requests++
      const body = Buffer.concat(chunks)
      const answer = (): void => {
        if (mode.kind === 'status') {
          res.writeHead(mode.status).end()
          return
        }
        if (req.url === '/v1/traces' && req.method === 'POST') {
          const json = (req.headers['content-type'] ?? '').includes('json')
          spans.push(...(json ? fromJson(body) : fromProtobuf(body)))
        }
        res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/x-protobuf' }).end()
      }
      // Unref'd: a stalled answer must not keep the test process alive once its tests are done.
      if (mode.kind === 'stall') setTimeout(answer, mode.ms).unref()
      else answer()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests: () => requests,
    mode: (m) => { mode = m },
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

// ------------------------------------------------------------------ JSON (OTLP/JSON: ids in hex)

interface JsonValue { stringValue?: string, intValue?: string | number, boolValue?: boolean, doubleValue?: number }
interface JsonKv { key: string, value: JsonValue }

function fromJson (body: Buffer): ReceivedSpan[] {
  const doc = JSON.parse(body.toString('utf8')) as { resourceSpans: Array<{ resource?: { attributes?: JsonKv[] }, scopeSpans: Array<{ spans: Array<Record<string, unknown>> }> }> }
  const out: ReceivedSpan[] = []
  for (const rs of doc.resourceSpans) {
    const serviceName = String(jsonAttrs(rs.resource?.attributes ?? [])['service.name'] ?? '')
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        out.push({
          traceId: String(s.traceId),
          spanId: String(s.spanId),
          parentSpanId: typeof s.parentSpanId === 'string' ? s.parentSpanId : '',
          name: String(s.name),
          kind: Number(s.kind),
          startNs: BigInt(String(s.startTimeUnixNano)),
          endNs: BigInt(String(s.endTimeUnixNano)),
          attributes: jsonAttrs((s.attributes ?? []) as JsonKv[]),
          status: Number((s.status as { code?: number } | undefined)?.code ?? 0),
          serviceName,
          encoding: 'json',
        })
      }
    }
  }
  return out
}

function jsonAttrs (kvs: JsonKv[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kv of kvs) {
    const v = kv.value
    if (v.stringValue !== undefined) out[kv.key] = v.stringValue
    else if (v.intValue !== undefined) out[kv.key] = Number(v.intValue)
    else if (v.boolValue !== undefined) out[kv.key] = v.boolValue
    else if (v.doubleValue !== undefined) out[kv.key] = v.doubleValue
  }
  return out
}

// ------------------------------------------------------------------ protobuf (opentelemetry/proto trace/v1)

type Field = { no: number, varint?: bigint, bytes?: Buffer, fixed?: Buffer }

function readVarint (buf: Buffer, pos: { at: number }): bigint {
  let result = 0n
  let shift = 0n
  for (;;) {
    const b = buf[pos.at++]!
    result |= BigInt(b & 0x7f) << shift
    if ((b & 0x80) === 0) return result
    shift += 7n
  }
}

function fields (buf: Buffer): Field[] {
  const out: Field[] = []
  const pos = { at: 0 }
  while (pos.at < buf.length) {
    const tag = Number(readVarint(buf, pos))
    const no = tag >>> 3
    switch (tag & 7) {
      case 0: out.push({ no, varint: readVarint(buf, pos) }); break
      case 1: out.push({ no, fixed: buf.subarray(pos.at, pos.at + 8) }); pos.at += 8; break
      case 2: {
        const len = Number(readVarint(buf, pos))
        out.push({ no, bytes: buf.subarray(pos.at, pos.at + len) })
        pos.at += len
        break
      }
      case 5: out.push({ no, fixed: buf.subarray(pos.at, pos.at + 4) }); pos.at += 4; break
      default: throw new Error(`unsupported wire type ${tag & 7}`)
    }
  }
  return out
}

const all = (fs: Field[], no: number): Buffer[] => fs.filter((f) => f.no === no).map((f) => f.bytes!)
const one = (fs: Field[], no: number): Field | undefined => fs.find((f) => f.no === no)

function pbAttrs (kvs: Buffer[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kv of kvs) {
    const f = fields(kv)
    const key = one(f, 1)!.bytes!.toString('utf8')
    const v = fields(one(f, 2)?.bytes ?? Buffer.alloc(0))
    const s = one(v, 1); const b = one(v, 2); const i = one(v, 3); const d = one(v, 4)
    if (s !== undefined) out[key] = s.bytes!.toString('utf8')
    else if (b !== undefined) out[key] = b.varint === 1n
    else if (i !== undefined) out[key] = Number(BigInt.asIntN(64, i.varint!))
    else if (d !== undefined) out[key] = d.fixed!.readDoubleLE(0)
  }
  return out
}

function fromProtobuf (body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of all(fields(body), 1)) {
    const rsf = fields(rs)
    const resource = one(rsf, 1)?.bytes
    const serviceName = String(pbAttrs(resource === undefined ? [] : all(fields(resource), 1))['service.name'] ?? '')
    for (const ss of all(rsf, 2)) {
      for (const s of all(fields(ss), 2)) {
        const f = fields(s)
        const status = one(f, 15)?.bytes
        out.push({
          traceId: one(f, 1)!.bytes!.toString('hex'),
          spanId: one(f, 2)!.bytes!.toString('hex'),
          parentSpanId: one(f, 4)?.bytes?.toString('hex') ?? '',
          name: one(f, 5)!.bytes!.toString('utf8'),
          kind: Number(one(f, 6)?.varint ?? 0n),
          startNs: one(f, 7)!.fixed!.readBigUInt64LE(0),
          endNs: one(f, 8)!.fixed!.readBigUInt64LE(0),
          attributes: pbAttrs(all(f, 9)),
          status: status === undefined ? 0 : Number(one(fields(status), 3)?.varint ?? 0n),
          serviceName,
          encoding: 'protobuf',
        })
      }
    }
  }
  return out
}
