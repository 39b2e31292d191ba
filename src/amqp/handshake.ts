// amqplib 2.3.1 reports a broker's refusal during the opening handshake as a
// plain Error without the close's reply code: a missing vhost (530
// NOT_ALLOWED) reads "Expected ConnectionOpenOk; got <ConnectionClose
// channel:0>", refused credentials (403) only name the code in the text.
// This puts the reply code of the broker's connection.close on the error, as
// amqplib already does for closes after the handshake, so classify() can read
// it. It reaches into amqplib's Connection class (the package's exports hide
// it); test/integration/broker-errors.test.ts fails loudly when an upgrade
// changes the shape this relies on. Switched on once, at first use.

interface Frame { id?: number, fields?: { replyCode?: unknown } }
type Step = (cb: (err: Error | null, frame?: Frame) => void) => void
interface ConnectionProto {
  open: (fields: unknown, cb?: (err: Error | null, ok?: unknown) => void) => void
  step: Step
}

// The method id of connection.close (class 10, method 50), as amqplib's defs number it.
const CONNECTION_CLOSE = (10 << 16) | 50

let installed: boolean | null = null

/** True when the handshake's close code will be on the error; false when amqplib does not look as expected. */
export function captureHandshakeCloseCodes (): boolean {
  if (installed !== null) return installed
  installed = false
  let proto: ConnectionProto | undefined
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    proto = (require('../../node_modules/amqplib/lib/connection.js') as { Connection?: { prototype: ConnectionProto } }).Connection?.prototype
  } catch {
    return false
  }
  if (proto === undefined || typeof proto.open !== 'function' || typeof proto.step !== 'function' || proto.open.length !== 2) return false
  const open = proto.open
  proto.open = function (this: ConnectionProto & { step: Step }, fields, cb) {
    let replyCode: number | undefined
    const step = this.step
    // Instance-level for the handshake only; the prototype's step serves afterwards.
    this.step = (k) => step.call(this, (err, frame) => {
      if (frame?.id === CONNECTION_CLOSE && typeof frame.fields?.replyCode === 'number') replyCode = frame.fields.replyCode
      k(err, frame)
    })
    open.call(this, fields, (err, ok) => {
      delete (this as Partial<ConnectionProto>).step
      if (err !== null && replyCode !== undefined && (err as NodeJS.ErrnoException).code === undefined) Object.assign(err, { code: replyCode })
      cb?.(err, ok)
    })
  }
  installed = true
  return true
}
