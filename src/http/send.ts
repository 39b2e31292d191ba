// Writes whole responses (relayq buffers reply bodies) to clients that may
// never read them. A client that stops reading holds its response's bytes in
// this process, so each body is written in pieces, and a response that makes
// no progress for ENQUEUER_SEND_TIMEOUT_MS is abandoned (nginx's
// send_timeout); the bytes of every response still being written are counted,
// and beyond ENQUEUER_MAX_BUFFERED_BYTES new requests are refused.
import type { ServerResponse } from 'node:http'

export interface SendLimits {
  readonly sendTimeoutMs: number
  /** 0: no limit. */
  readonly maxBufferedBytes: number
}

export type SendOutcome = 'written' | 'abandoned'

// Written piece by piece so each 'drain' proves progress; the kernel takes about this much per write on loopback.
const PIECE_BYTES = 64 * 1024

export class ResponseSender {
  private bytes = 0

  constructor (private readonly limits: SendLimits, private readonly onTimeout: () => void = () => {}) {}

  /** Bytes of bodies being written to clients now. */
  get bufferedBytes (): number {
    return this.bytes
  }

  /** Bytes a streamed answer holds for a client that has not read them (enqueuer/stream.ts); given back with `release`. */
  hold (bytes: number): void {
    this.bytes += bytes
  }

  release (bytes: number): void {
    this.bytes -= bytes
  }

  /** Responses being written hold at least the limit: new requests are refused until they drain. */
  get full (): boolean {
    return this.limits.maxBufferedBytes > 0 && this.bytes >= this.limits.maxBufferedBytes
  }

  /**
   * Writes a response; `body` null writes none (HEAD, 204, 304). Resolves once
   * the last byte is handed to the kernel, or the response is abandoned (the
   * client went away, or read nothing for the send timeout). Throws, having
   * written nothing, if Node refuses the status or headers.
   */
  send (res: ServerResponse, status: number, headers: readonly string[], body: Buffer | null): Promise<SendOutcome> {
    if (res.destroyed) return Promise.resolve('abandoned')
    res.writeHead(status, headers as string[])
    const size = body?.length ?? 0
    this.bytes += size
    // The send timeout runs only while the client holds us up (a full socket buffer): most answers are taken by
    // the kernel at once and never arm it.
    let timer: NodeJS.Timeout | null = null
    const stalled = (): void => {
      if (timer === null) {
        timer = setTimeout(() => {
          this.onTimeout()
          res.destroy()
        }, this.limits.sendTimeoutMs)
      } else {
        timer.refresh()
      }
    }
    // A response always ends with 'close': after 'finish' when written, or when its connection went away.
    const outcome = new Promise<SendOutcome>((resolve) => {
      res.once('close', () => {
        if (timer !== null) clearTimeout(timer)
        this.bytes -= size
        resolve(res.writableFinished ? 'written' : 'abandoned')
      })
    })
    if (body === null || size <= PIECE_BYTES) {
      res.end(body ?? undefined)
    } else {
      let offset = 0
      const pump = (): void => {
        while (offset < size && !res.destroyed) {
          const end = Math.min(offset + PIECE_BYTES, size)
          const more = res.write(body.subarray(offset, end))
          offset = end
          if (!more && offset < size) {
            stalled()
            res.once('drain', pump)
            return
          }
        }
        if (!res.destroyed) res.end()
      }
      pump()
    }
    // Still held: bytes the kernel has not taken, or (a pipelined answer) no socket yet, behind an earlier answer.
    if (!res.destroyed && (res.socket === null || res.socket.writableLength > 0)) stalled()
    return outcome
  }
}
