import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { TABLE_PAGE, withEnvTable } from '../../src/config/table'
import { ERROR_CODES, statusOf } from '../../src/errors'

const readme = readFileSync('README.md', 'utf8')

/** The reference pages under docs/. */
function docPages (): string[] {
  return readdirSync('docs', { recursive: true }).map(String).filter((f) => f.endsWith('.md')).map((f) => readFileSync(join('docs', f), 'utf8'))
}

/** Markdown link targets outside fenced code blocks. */
function linksOf (md: string): string[] {
  const prose = md.replace(/^```[\s\S]*?^```/gm, '')
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!)
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function anchorsOf (md: string): Set<string> {
  const prose = md.replace(/^```[\s\S]*?^```/gm, '')
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const m of prose.matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
    const n = seen.get(slug) ?? 0
    seen.set(slug, n + 1)
    out.add(n === 0 ? slug : `${slug}-${n}`)
  }
  return out
}

describe('README and docs/', () => {
  it(`${TABLE_PAGE}'s configuration table matches the spec (run \`npm run docs\` after changing a variable)`, () => {
    const page = readFileSync(TABLE_PAGE, 'utf8')
    assert.equal(withEnvTable(page), page)
  })
  // Both directions, as fastify's errors test does: every code is documented
  // with its status, and every code the docs name exists.
  describe('error codes', () => {
    const docs = [readme, ...docPages()].join('\n')
    const rows = [...docs.matchAll(/^\| (\d{3}) \| `(RQ_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => ({ status: Number(m[1]), code: m[2]! }))

    it('every code has exactly one row in an error table, with the status errors.ts gives it', () => {
      for (const code of ERROR_CODES) {
        const found = rows.filter((r) => r.code === code)
        assert.equal(found.length, 1, `${code}: ${found.length} rows in the error tables`)
        assert.equal(found[0]!.status, statusOf(code), `${code}: documented as ${found[0]!.status}, errors.ts says ${statusOf(code)}`)
      }
    })

    it('every code the docs name exists in errors.ts', () => {
      const named = new Set([...docs.matchAll(/RQ_ERR_[A-Z0-9_]*[A-Z0-9]/g)].map((m) => m[0]))
      for (const code of named) assert.ok((ERROR_CODES as string[]).includes(code), `the docs name ${code}, which errors.ts does not define`)
      for (const row of rows) assert.ok((ERROR_CODES as string[]).includes(row.code), row.code)
    })
  })
  it('`npm ci` prints no install-scripts warning: allowScripts covers every dependency with an install script', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { allowScripts?: Record<string, boolean> }
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean, version?: string }> }
    const withScripts = Object.entries(lock.packages).filter(([path, p]) => path !== '' && p.hasInstallScript === true)
    assert.ok(withScripts.length > 0, 'the lock file marks install scripts (esbuild has one)')
    for (const [path, p] of withScripts) {
      const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
      const covered = Object.keys(pkg.allowScripts ?? {}).some((k) => k === name || k === `${name}@${p.version ?? ''}`)
      assert.ok(covered, `${name} has an install script that allowScripts does not cover`)
    }
  })

  it('`npm run test:unit` needs no bundle: no unit test spawns it', () => {
    for (const f of readdirSync('test/unit').filter((n) => n.endsWith('.test.ts'))) {
      assert.doesNotMatch(readFileSync(join('test/unit', f), 'utf8'), /helpers\/process|dist\/relayq/, `test/unit/${f} uses the bundle`)
    }
    assert.match(readFileSync('scripts/test.mjs', 'utf8'), /if \(groups\.some\(\(g\) => g !== 'unit'\)\) \{\n\s+console\.log\('> build'\)/)
  })

  it('every relative link in the README, CONTRIBUTING.md, docs/ and the other READMEs reaches a file and heading', () => {
    const pages = ['README.md', 'CONTRIBUTING.md', 'bench/README.md', 'deploy/README.md', 'deploy/prometheus/README.md', 'deploy/rabbitmq/README.md',
      ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
    let checked = 0
    for (const page of pages) {
      for (const target of linksOf(readFileSync(page, 'utf8'))) {
        if (/^[a-z]+:/i.test(target)) continue
        const [path = '', anchor] = target.split('#')
        const file = path === '' ? page : join(dirname(page), path)
        checked++
        assert.ok(existsSync(file), `${page} links ${target}: no such file`)
        if (anchor !== undefined && file.endsWith('.md')) {
          assert.ok(anchorsOf(readFileSync(file, 'utf8')).has(anchor), `${page} links ${target}: no such heading in ${file}`)
        }
      }
    }
    assert.ok(checked > 20, `only ${checked} links checked`)
  })

  it('gives the test command that .ci/run calls', () => {
    assert.match(readme, /npm ci && npm test/)
    assert.match(readFileSync('.ci/run', 'utf8'), /npm test/)
  })
})
