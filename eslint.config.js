// Temporal's rules: no floating promises anywhere (a dropped promise in a workflow is a lost step),
// and workflow code imports only @temporalio/workflow and pure modules (type-only imports are fine).
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.venv/**', '.data/**', 'coverage/**', 'eslint.config.js', 'jest.config.js', 'jest.faults.config.js', 'jest.kohya.config.js'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: __dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['workflows/**/*.ts', 'lib/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'path', 'os', 'crypto', 'child_process'], message: 'workflow and pure modules must not touch the host', allowTypeImports: true },
            // @temporalio/common is the deterministic core @temporalio/workflow is built on (search attribute keys live there).
            { group: ['@temporalio/*', '!@temporalio/workflow', '!@temporalio/common'], message: 'workflow code imports only @temporalio/workflow', allowTypeImports: true },
            { group: ['@aws-sdk/*', 'sharp', 'tar'], message: 'I/O belongs in activities and adapters', allowTypeImports: true },
            { group: ['**/activities', '**/activities/*', '**/adapters/*', '**/adapters/**'], message: 'import activities as types only', allowTypeImports: true },
          ],
        },
      ],
    },
  },
  {
    // lib/ is pure: not even @temporalio/workflow.
    files: ['lib/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            // Hashing is pure; files, processes and the network are not.
            { group: ['node:*', '!node:crypto', 'fs', 'path', 'os', 'child_process'], message: 'lib/ modules are pure', allowTypeImports: true },
            { group: ['@temporalio/*', '@aws-sdk/*', 'sharp', 'tar'], message: 'lib/ modules are pure', allowTypeImports: true },
          ],
        },
      ],
    },
  },
);
