// A throwaway certificate authority for TLS tests, made with openssl in a
// temporary folder: a server certificate for localhost and 127.0.0.1, and a
// client certificate for mutual TLS. Nothing here is trusted anywhere else.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestCerts {
  readonly dir: string
  readonly ca: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
  readonly clientKey: string
  remove: () => void
}

function openssl (dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('openssl is not installed: the TLS tests make their certificates with it (apt-get install openssl)')
    throw new Error(`openssl ${args.join(' ')} failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`)
  }
}

export function makeTestCerts (): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'relayq-certs-'))
  const key = (name: string): void => openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name])
  key('ca.key')
  openssl(dir, ['req', '-x509', '-new', '-key', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=relayq test CA'])
  const sign = (name: string, subject: string, ext: string): void => {
    key(`${name}.key`)
    openssl(dir, ['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
    writeFileSync(join(dir, `${name}.ext`), ext)
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`])
  }
  sign('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  sign('client', '/CN=relayq-client', 'extendedKeyUsage=clientAuth\n')
  for (const k of ['ca.key', 'server.key', 'client.key']) chmodSync(join(dir, k), 0o600)
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}
