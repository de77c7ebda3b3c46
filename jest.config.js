/** Unit tests are pure and fast; integration tests start a real Temporal dev server and moto. */
// Tests build AWS clients of their own; the SDK's notice about Node 22 is silenced as the worker
// silences it (adapters/aws.ts), so it does not bury test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Fault tests kill processes and take minutes: `npm run test:faults` runs them; real sd-scripts
  // needs its own install (scripts/setup-kohya.sh): `npm run test:kohya` runs those.
  testPathIgnorePatterns: ['/node_modules/', '/test/faults/', '/test/kohya/'],
  // Type checking is `npm run typecheck`'s job; ts-jest only transpiles (isolatedModules in tsconfig).
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 120000,
  verbose: true,
};
