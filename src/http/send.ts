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
   * Writes a response; `body` null writes none (HEAD, 204, 304). Throws,
   * having written nothing, if Node refuses the status or headers.
   */
  send (res: ServerResponse, status: number, headers: readonly string[], body: Buffer | null): void {
    if (res.destroyed) return
    res.writeHead(status, headers as string[])
    const size = body?.length ?? 0
    if (body === null || size <= PIECE_BYTES) {
      res.end(body ?? undefined)
      // Nearly every answer is taken by the kernel at once: nothing is held, nothing to watch (and nothing
      // allocated for it). Still held: bytes the kernel has not taken, or (a pipelined answer) no socket yet.
      if (res.destroyed || (res.socket !== null && res.socket.writableLength === 0)) return
      this.watch(res, size).stalled()
      return
    }
    const watch = this.watch(res, size)
    let offset = 0
    const pump = (): void => {
      while (offset < size && !res.destroyed) {
        const end = Math.min(offset + PIECE_BYTES, size)
        const more = res.write(body.subarray(offset, end))
        offset = end
        if (!more && offset < size) {
          watch.stalled()
          res.once('drain', pump)
          return
        }
      }
      if (!res.destroyed) res.end()
    }
    pump()
    if (!res.destroyed && (res.socket === null || res.socket.writableLength > 0)) watch.stalled()
  }

  /**
   * Counts `size` bytes as held until the response closes (after 'finish' when
   * written, or when its connection went away); `stalled()` (re)arms the send
   * timeout, which runs only while the client holds the answer up.
   */
  private watch (res: ServerResponse, size: number): { stalled: () => void } {
    this.bytes += size
    let timer: NodeJS.Timeout | null = null
    res.once('close', () => {
      if (timer !== null) clearTimeout(timer)
      this.bytes -= size
    })
    return {
      stalled: () => {
        if (timer === null) {
          timer = setTimeout(() => {
            this.onTimeout()
            res.destroy()
          }, this.limits.sendTimeoutMs)
        } else {
          timer.refresh()
        }
      },
    }
  }
}
