// The dead-letter reprocessor: `relayq dlq <command> --service NAME`.
export async function runDlqTool (args: readonly string[], _env: NodeJS.ProcessEnv): Promise<number> {
  process.stderr.write(`relayq dlq: not implemented yet (${args.join(' ')})\n`)
  return 2
}
