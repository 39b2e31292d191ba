// Who the client is, as the service sees it. Like nginx's
// $proxy_add_x_forwarded_for, the peer's address is appended to
// X-Forwarded-For, so the last entry is always one relayq saw itself. With
// ENQUEUER_TRUSTED_PROXIES set, a peer outside that list is not a proxy whose
// word counts: its forwarding headers are dropped before the append, so a
// client cannot pose as someone else to a service that reads the first entry.
import { BlockList, isIPv4 } from 'node:net'
import type { HeaderTable } from '../http/headers'

const FORWARDING = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip', 'forwarded']

export class ForwardedFor {
  private readonly trusted: BlockList | null

  /** `trusted`: `address/prefix` ranges; null trusts every peer's headers (they are still appended to). */
  constructor (trusted: readonly string[] | null) {
    if (trusted === null) {
      this.trusted = null
      return
    }
    this.trusted = new BlockList()
    for (const range of trusted) {
      const [address, prefix] = range.split('/') as [string, string]
      this.trusted.addSubnet(address, Number(prefix), isIPv4(address) ? 'ipv4' : 'ipv6')
    }
  }

  /** Rewrites the forwarded header table for a request from `peer` (the socket's remote address). */
  apply (table: HeaderTable, peer: string | undefined): void {
    if (peer === undefined) return
    // Node reports IPv4 clients of a dual-stack listener as ::ffff:a.b.c.d; nginx and services expect a.b.c.d.
    const address = peer.startsWith('::ffff:') && isIPv4(peer.slice(7)) ? peer.slice(7) : peer
    if (this.trusted !== null && !this.trusted.check(address, isIPv4(address) ? 'ipv4' : 'ipv6')) {
      for (const name of FORWARDING) Reflect.deleteProperty(table, name)
    }
    const prev = table['x-forwarded-for']
    const chain = prev === undefined ? '' : typeof prev === 'string' ? prev.trim() : prev.map((v) => v.trim()).filter((v) => v !== '').join(', ')
    table['x-forwarded-for'] = chain === '' ? address : `${chain}, ${address}`
  }
}
