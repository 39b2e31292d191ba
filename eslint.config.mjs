// Lint: typescript-eslint's type-aware rules that catch lost acks and
// floating promises, plus the project's layering rules.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const modes = ['**/enqueuer', '**/enqueuer/*', '**/dequeuer', '**/dequeuer/*', '**/cluster/*', '**/dlq/*']

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'deploy/**', '.tools/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts'] })),
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', name: ['describe', 'it', 'test', 'suite'], package: 'node:test' }] }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'off',
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/no-redundant-type-constituents': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Configuration is read once, in src/config and main.ts; nothing else reads the environment.
    files: ['src/**/*.ts'],
    ignores: ['src/config/**', 'src/main.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'read configuration through src/config' }],
    },
  },
  {
    // Shared modules never import a mode.
    files: ['src/amqp/**', 'src/http/**', 'src/config/**', 'src/metrics/**', 'src/errors.ts', 'src/log.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: modes, message: 'shared modules must not depend on a mode' }] }],
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', fetch: 'readonly', require: 'readonly', URL: 'readonly', __dirname: 'readonly', performance: 'readonly', setImmediate: 'readonly', clearTimeout: 'readonly', import: 'readonly' } },
  },
)
