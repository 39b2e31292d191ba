// amqplib writes every frame with its own socket.write, which on loopback is
// one system call per publish or ack. Profiles of a bridge showed 55-60% of
// its busy time in those writes. Its muxer already gathers the frames of all
// channels and flushes them from one setImmediate; corking the socket around
// that flush turns the whole batch into a single writev.
//
// This patches amqplib's muxer: coalesceWrites checks its shape and returns
// false, changing nothing, when it differs (internals.ts logs that);
// test/integration/amqplib-internals.test.ts fails when the pinned amqplib no
// longer matches or no longer flushes through `_readIncoming`.
import type { ChannelModel } from 'amqplib'

interface Muxer { _readIncoming: () => void }
interface Internals { connection?: { muxer?: Muxer, stream?: NodeJS.WritableStream & { cork?: () => void, uncork?: () => void } } }

export function coalesceWrites (model: ChannelModel): boolean {
  const inner = (model as unknown as Internals).connection
  const muxer = inner?.muxer
  const stream = inner?.stream
  if (muxer === undefined || stream?.cork === undefined || stream.uncork === undefined) return false
  const flush = muxer._readIncoming.bind(muxer)
  muxer._readIncoming = () => {
    stream.cork!()
    try {
      flush()
    } finally {
      stream.uncork!()
    }
  }
  return true
}
