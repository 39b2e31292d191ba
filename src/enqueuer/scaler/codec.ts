// The protobuf encoding of KEDA's external scaler messages
// (externalscaler.proto, kept in proto/ and checked against this codec by
// test/unit/scaler-codec.test.ts with @grpc/proto-loader). Six small messages
// do not justify protobufjs in the bundle: this is the wire format by hand,
// proto3 rules (defaults omitted, unknown fields skipped).
//
// Decoding reads bytes a gRPC peer sent: every length is checked against the
// buffer, and a message that breaks the rules throws (grpc-js answers it
// with an error status; nothing else is touched).

export interface ScaledObjectRef {
  readonly name: string
  readonly namespace: string
  readonly scalerMetadata: Readonly<Record<string, string>>
}

export interface GetMetricsRequest {
  readonly scaledObjectRef: ScaledObjectRef
  readonly metricName: string
}

export interface MetricSpec { readonly metricName: string, readonly targetSize: number }
export interface MetricValue { readonly metricName: string, readonly metricValue: number }

/** More metadata entries than any scaled object carries: a bound, not a limit anyone meets. */
const MAX_METADATA = 256

const VARINT = 0
const FIXED64 = 1
const LEN = 2
const FIXED32 = 5

class Reader {
  pos = 0
  constructor (private readonly buf: Uint8Array) {}

  get done (): boolean { return this.pos >= this.buf.length }

  varint (): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint')
      const b = this.buf[this.pos++]!
      value += (b & 0x7f) * scale
      if (b < 0x80) return value
      scale *= 128
    }
    throw new Error('varint longer than 10 bytes')
  }

  bytes (): Uint8Array {
    const len = this.varint()
    if (len > this.buf.length - this.pos) throw new Error('length beyond the message')
    const out = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return out
  }

  string (): string {
    return Buffer.from(this.bytes()).toString('utf8')
  }

  skip (wireType: number): void {
    if (wireType === VARINT) this.varint()
    else if (wireType === FIXED64) this.advance(8)
    else if (wireType === LEN) this.bytes()
    else if (wireType === FIXED32) this.advance(4)
    else throw new Error(`unsupported wire type ${wireType}`)
  }

  private advance (n: number): void {
    if (n > this.buf.length - this.pos) throw new Error('truncated field')
    this.pos += n
  }
}

function fields (buf: Uint8Array, each: (field: number, wireType: number, r: Reader) => boolean): void {
  const r = new Reader(buf)
  while (!r.done) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wireType = tag & 7
    if (!each(field, wireType, r)) r.skip(wireType)
  }
}

export function decodeScaledObjectRef (buf: Uint8Array): ScaledObjectRef {
  let name = ''
  let namespace = ''
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>
  let entries = 0
  fields(buf, (field, wireType, r) => {
    if (wireType !== LEN) return false
    if (field === 1) name = r.string()
    else if (field === 2) namespace = r.string()
    else if (field === 3) {
      if (++entries > MAX_METADATA) throw new Error('too many scalerMetadata entries')
      let key = ''
      let value = ''
      fields(r.bytes(), (f, wt, e) => {
        if (wt !== LEN) return false
        if (f === 1) key = e.string()
        else if (f === 2) value = e.string()
        else return false
        return true
      })
      metadata[key] = value
    } else return false
    return true
  })
  return { name, namespace, scalerMetadata: metadata }
}

export function decodeGetMetricsRequest (buf: Uint8Array): GetMetricsRequest {
  let ref: ScaledObjectRef = { name: '', namespace: '', scalerMetadata: {} }
  let metricName = ''
  fields(buf, (field, wireType, r) => {
    if (wireType !== LEN) return false
    if (field === 1) ref = decodeScaledObjectRef(r.bytes())
    else if (field === 2) metricName = r.string()
    else return false
    return true
  })
  return { scaledObjectRef: ref, metricName }
}

class Writer {
  private readonly parts: Buffer[] = []

  varint (n: number): void {
    const out: number[] = []
    let v = n
    while (v >= 0x80) {
      out.push((v % 128) | 0x80)
      v = Math.floor(v / 128)
    }
    out.push(v)
    this.parts.push(Buffer.from(out))
  }

  tag (field: number, wireType: number): void {
    this.varint(field * 8 + wireType)
  }

  bytes (field: number, b: Buffer): void {
    this.tag(field, LEN)
    this.varint(b.length)
    this.parts.push(b)
  }

  string (field: number, s: string): void {
    if (s !== '') this.bytes(field, Buffer.from(s, 'utf8'))
  }

  /** int64 as a varint: relayq's values are non-negative integers. */
  int64 (field: number, n: number): void {
    if (n === 0) return
    this.tag(field, VARINT)
    this.varint(n)
  }

  double (field: number, n: number): void {
    if (n === 0) return
    this.tag(field, FIXED64)
    const b = Buffer.alloc(8)
    b.writeDoubleLE(n)
    this.parts.push(b)
  }

  finish (): Buffer {
    return Buffer.concat(this.parts)
  }
}

function count (n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0
}

export function encodeIsActiveResponse (result: boolean): Buffer {
  return result ? Buffer.from([0x08, 0x01]) : Buffer.alloc(0)
}

export function encodeGetMetricSpecResponse (specs: readonly MetricSpec[]): Buffer {
  const w = new Writer()
  for (const s of specs) {
    const m = new Writer()
    m.string(1, s.metricName)
    m.int64(2, count(s.targetSize))
    m.double(3, count(s.targetSize))
    w.bytes(1, m.finish())
  }
  return w.finish()
}

export function encodeGetMetricsResponse (values: readonly MetricValue[]): Buffer {
  const w = new Writer()
  for (const v of values) {
    const m = new Writer()
    m.string(1, v.metricName)
    m.int64(2, count(v.metricValue))
    m.double(3, count(v.metricValue))
    w.bytes(1, m.finish())
  }
  return w.finish()
}

// The client side (the tests' autoscaler speaks it through grpc-js too).
export function encodeScaledObjectRef (ref: ScaledObjectRef): Buffer {
  const w = new Writer()
  w.string(1, ref.name)
  w.string(2, ref.namespace)
  for (const [k, v] of Object.entries(ref.scalerMetadata)) {
    const e = new Writer()
    e.string(1, k)
    e.string(2, v)
    w.bytes(3, e.finish())
  }
  return w.finish()
}

export function decodeIsActiveResponse (buf: Uint8Array): boolean {
  let result = false
  fields(buf, (field, wireType, r) => {
    if (field !== 1 || wireType !== VARINT) return false
    result = r.varint() !== 0
    return true
  })
  return result
}
