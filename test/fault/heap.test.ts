// No growth without a bound on the request path: the heap after a full GC
// stays flat across rounds of ordinary load through an enqueuer and a
// dequeuer (the soak tests watch RSS, which the GC's sizing and a restarted
// process's warm-up move too much to catch a slow leak).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)

describe('heap under load', () => {
  it('the heap after GC grows by less than 1.5 MB over 15,000 requests once warm', async () => {
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/helpers/heap-probe.ts', '6', '3000'], { timeout: 240_000, env: { ...process.env, RELAYQ_TEST: '1' } })
    const line = stdout.trim().split('\n').at(-1) ?? ''
    const r = JSON.parse(line) as { heapMb: number[], failed: number, inflight: number, pending: number, buffered: number }
    console.log(`# heap after GC by round (MB): ${r.heapMb.map((m) => m.toFixed(1)).join(', ')}`)
    assert.equal(r.failed, 0)
    assert.deepEqual([r.inflight, r.pending, r.buffered], [0, 0, 0])
    // Round 0 warms up (JIT, pools, caches); 5 rounds of 3,000 requests follow. A leak of 100 bytes a request
    // would add 1.5 MB.
    const warm = r.heapMb[0]!
    const last = r.heapMb.at(-1)!
    assert.ok(last - warm < 1.5, `heap grew from ${warm.toFixed(1)} to ${last.toFixed(1)} MB`)
  })
})
