// rabbitmqctl against the shared broker, for what the AMQP protocol cannot
// do: list every queue of a vhost, and make throwaway vhosts, users and
// policies. RELAYQ_TEST_RABBITMQCTL names another binary.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const CTL = process.env.RELAYQ_TEST_RABBITMQCTL ?? 'rabbitmqctl'

export async function rabbitmqctl (...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(CTL, args, { timeout: 30000 })
    return stdout
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') throw new Error(`${CTL} not found: these tests need rabbitmqctl for the broker on 127.0.0.1:5672 (set RELAYQ_TEST_RABBITMQCTL)`)
    throw new Error(`${CTL} ${args.join(' ')} failed: ${e.stderr ?? e.message}`)
  }
}

/** Every queue name of a vhost. */
export async function listQueues (vhost = '/'): Promise<Set<string>> {
  const out = await rabbitmqctl('list_queues', '-q', '--no-table-headers', '-p', vhost, 'name')
  return new Set(out.split('\n').map((l) => l.trim()).filter((l) => l !== ''))
}
