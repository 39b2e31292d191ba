// Which HTTP headers may cross relayq. Both directions drop hop-by-hop headers
// (RFC 9110 7.6.1) and every header the Connection header names; requests
// also lose the headers relayq and the broker write on messages, so a client
// can never forge a method, a path, an attempt count or a death record.

export type HeaderValue = string | string[]
export type HeaderTable = Record<string, HeaderValue>

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'host', 'content-length', 'http2-settings',
  // relayq buffers whole bodies, so a 100-continue handshake ends at each hop.
  'expect',
])

/** Names that belong to relayq's or RabbitMQ's control plane; never taken from a client or a service. */
export function isReservedHeader (name: string): boolean {
  return name.startsWith('x-http-') ||
    name.startsWith('x-relayq-') ||
    name === 'x-status-code' ||
    name === 'x-death' ||
    name === 'x-delivery-count' ||
    name === 'x-acquired-count' ||
    name === 'x-received-from' ||
    name.startsWith('x-first-death-') ||
    name.startsWith('x-last-death-') ||
    name.startsWith('x-opt-')
}

export function isHopByHop (name: string): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-')
}

/**
 * Lower-cased header names listed in a Connection header value, other than
 * the usual keep-alive/close, added to `into`: a message may carry several
 * Connection lines, and every one of them counts.
 */
export function connectionNominated (value: string | undefined, into: Set<string> | null = null): Set<string> | null {
  if (value === undefined) return into
  // Nearly every request says just one of these: skip the split.
  const v = value.length <= 10 ? value.toLowerCase() : ''
  if (v === 'keep-alive' || v === 'close') return into
  let names = into
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '' || name === 'keep-alive' || name === 'close') continue
    ;(names ??= new Set()).add(name)
  }
  return names
}

export function addHeader (table: HeaderTable, name: string, value: string): void {
  const prev = table[name]
  if (prev === undefined) table[name] = value
  else if (typeof prev === 'string') table[name] = [prev, value]
  else prev.push(value)
}

/** What the enqueuer needs from a request's headers, read in the one pass that also builds the forwarded table. */
export interface ScannedRequestHeaders {
  readonly table: HeaderTable
  readonly count: number
  timeoutMs: string | undefined
  callbackUrl: string | undefined
  contentType: string | undefined
  authorization: string | undefined
  prefer: string | undefined
  /** Value of the configured job-guard header (ASYNC_AUTH_HEADER). */
  jobToken: string | undefined
  contentLength: string | undefined
  transferEncoding: string | undefined
}

/**
 * One pass over Node's rawHeaders ([name, value, name, value, ...]): lower-cases names, keeps
 * repeated headers as arrays, and drops what must not reach the message.
 */
export function scanRequestHeaders (raw: readonly string[], jobTokenHeader: string, dropAuthorization: boolean): ScannedRequestHeaders {
  const table: HeaderTable = {}
  const out: ScannedRequestHeaders = {
    table,
    count: raw.length >> 1,
    timeoutMs: undefined,
    callbackUrl: undefined,
    contentType: undefined,
    authorization: undefined,
    prefer: undefined,
    jobToken: undefined,
    contentLength: undefined,
    transferEncoding: undefined,
  }
  let nominated: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    const value = raw[i + 1] as string
    if (name === jobTokenHeader) out.jobToken = value
    switch (name) {
      case 'connection': nominated = connectionNominated(value, nominated); continue
      case 'x-relayq-timeout-ms': out.timeoutMs = value; continue
      case 'x-relayq-callback-url': out.callbackUrl = value; continue
      case 'content-type': out.contentType = value; break
      case 'prefer': out.prefer = value; break
      case 'content-length': out.contentLength = value; continue
      case 'transfer-encoding': out.transferEncoding = value; continue
      case 'authorization':
        out.authorization = value
        if (dropAuthorization) continue
        break
    }
    if (isHopByHop(name) || isReservedHeader(name)) continue
    addHeader(table, name, value)
  }
  if (nominated !== null) for (const name of nominated) Reflect.deleteProperty(table, name)
  return out
}

/** Response headers (from undici's raw Buffer pairs) that may go back to the client. */
export function responseHeaderTable (raw: readonly Buffer[] | readonly string[], keepContentLength: boolean): { table: HeaderTable, contentType: string | undefined } {
  const table: HeaderTable = {}
  let contentType: string | undefined
  let nominated: Set<string> | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase()
    const value = raw[i + 1]!.toString('latin1')
    if (name === 'connection') {
      nominated = connectionNominated(value, nominated)
      continue
    }
    if (name === 'content-length' && keepContentLength) {
      table[name] = value
      continue
    }
    if (isHopByHop(name) || isReservedHeader(name)) continue
    if (name === 'content-type') contentType = value
    addHeader(table, name, value)
  }
  if (nominated !== null) for (const name of nominated) Reflect.deleteProperty(table, name)
  return { table, contentType }
}

/** A Content-Length as RFC 9110 writes it: digits only, at most 15 so the number is exact; anything else is undefined. */
export function validContentLength (value: unknown): string | undefined {
  return typeof value === 'string' && /^\d{1,15}$/.test(value) ? value : undefined
}
