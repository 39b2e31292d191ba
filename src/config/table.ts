// The configuration table of docs/configuration.md, rendered from the spec (a
// test keeps the page in step; `npm run docs` rewrites it).
import { SPEC, type VarSpec } from './spec'

export function renderEnvTable (): string {
  const rows = ['| Variable | Default | Mode | Meaning |', '| --- | --- | --- | --- |']
  let group = ''
  for (const spec of Object.values(SPEC) as VarSpec[]) {
    if (spec.group !== group) {
      group = spec.group
      rows.push(`| **${group}** | | | |`)
    }
    const def = spec.default === undefined ? '' : spec.default === '' ? '(empty)' : `\`${spec.default}\``
    const name = spec.file === true ? `\`${spec.name}\` (or \`${spec.name}_FILE\`)` : `\`${spec.name}\``
    rows.push(`| ${name} | ${def} | ${spec.scope} | ${spec.doc.replace(/\|/g, '\\|')} |`)
  }
  return rows.join('\n')
}

export const TABLE_START = '<!-- env-table:start -->'
export const TABLE_END = '<!-- env-table:end -->'

export const TABLE_PAGE = 'docs/configuration.md'

export function withEnvTable (page: string): string {
  const start = page.indexOf(TABLE_START)
  const end = page.indexOf(TABLE_END)
  if (start === -1 || end === -1) throw new Error(`${TABLE_PAGE} has no env-table markers`)
  return page.slice(0, start + TABLE_START.length) + '\n' + renderEnvTable() + '\n' + page.slice(end)
}
