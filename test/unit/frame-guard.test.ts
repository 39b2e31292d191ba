// The frame guard's rewriting of content-header frames, checked against
// amqplib's own decoder: tables it can decode are left as they are; a deep or
// malformed one becomes the one-entry marker table, other properties kept.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { checkTable, guardHeaderFrame, MAX_TABLE_DEPTH } from '../../src/amqp/frame-guard'
import { nestedArrayEntries, publishFrames, stringEntry } from '../helpers/hostile-amqp'

const req = createRequire(__filename)
const frame = req(join(req.resolve('amqplib'), '..', 'lib', 'frame.js')) as {
  parseFrame: (b: Buffer, max: number) => { rest: Buffer } & Record<string, unknown>
  decodeFrame: (f: unknown) => { size: number, fields: { headers: Record<string, unknown>, correlationId?: string, replyTo?: string } }
}

/** The content-header frame (and what follows) of a raw publish. */
function headerFrame (entries: Buffer, props = { correlationId: 'c-1', replyTo: 'r-1' }): Buffer {
  const all = publishFrames(1, 'q', entries, props, Buffer.from('body'))
  return all.subarray(7 + all.readUInt32BE(3) + 1)
}

function decode (buf: Buffer): ReturnType<typeof frame.decodeFrame> {
  return frame.decodeFrame(frame.parseFrame(buf, 0))
}

describe('frame guard', () => {
  it('leaves a table amqplib can decode untouched (x-death-like nesting included)', () => {
    const entries = Buffer.concat([stringEntry('a', 'b'), nestedArrayEntries(MAX_TABLE_DEPTH)])
    const buf = headerFrame(entries)
    assert.equal(checkTable(entries), null)
    assert.equal(guardHeaderFrame(buf), buf)
  })

  it('replaces a table nested past the limit, keeps the other properties and the following frames', () => {
    const buf = headerFrame(Buffer.concat([stringEntry('a', 'b'), nestedArrayEntries(MAX_TABLE_DEPTH + 1)]))
    const guarded = guardHeaderFrame(buf)
    const decoded = decode(guarded)
    assert.match(String(decoded.fields.headers['x-relayq-undecodable']), /nested deeper than 32/)
    assert.deepEqual(Object.keys(decoded.fields.headers), ['x-relayq-undecodable'])
    assert.equal(decoded.fields.correlationId, 'c-1')
    assert.equal(decoded.fields.replyTo, 'r-1')
    assert.equal(decoded.size, 4)
    const body = frame.parseFrame(frame.parseFrame(guarded, 0).rest, 0)
    assert.equal((body.payload as Buffer).toString(), 'body')
  })

  it('replaces tables amqplib would throw on: unknown tag, lengths past the end', () => {
    const badTag = Buffer.from([1, 0x61, 0x5a])
    assert.match(String(checkTable(badTag)), /unknown field type/)
    const overrun = Buffer.concat([Buffer.from([1, 0x61, 0x53, 0, 0, 0, 99]), Buffer.from('x')])
    assert.match(String(checkTable(overrun)), /malformed/)
    assert.throws(() => decode(headerFrame(badTag)), TypeError)
    assert.match(String(decode(guardHeaderFrame(headerFrame(overrun))).fields.headers['x-relayq-undecodable']), /malformed/)
  })
})
