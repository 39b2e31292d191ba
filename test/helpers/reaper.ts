// Processes a test file starts (relays, private brokers) die with it. A file
// the runner stops at its timeout gets SIGTERM and no `after` hook runs, so
// without this its children outlive it and load the machine for later tests.
const cleanups = new Set<() => void>()
let installed = false

/** Runs `cleanup` (synchronously) when this process exits or is stopped; returns the way to cancel that. */
export function reapOnExit (cleanup: () => void): () => void {
  install()
  cleanups.add(cleanup)
  return () => { cleanups.delete(cleanup) }
}

function install (): void {
  if (installed) return
  installed = true
  const runAll = (): void => {
    for (const cleanup of cleanups) {
      try { cleanup() } catch { /* the next one still runs */ }
    }
    cleanups.clear()
  }
  process.on('exit', runAll)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      runAll()
      process.exit(signal === 'SIGINT' ? 130 : 143)
    })
  }
}
