/** Jest runs TypeScript through SWC (type checking is `npm run typecheck`, run by `npm test`). */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  // @noble and @scure ship ESM only (also the copies nested under nostr-tools): let SWC turn them into CommonJS for
  // Jest's module registry.
  transformIgnorePatterns: ['/node_modules/(?!(@noble|@scure|nostr-tools)/)'],
  globalSetup: '<rootDir>/test/setup/global-setup.ts',
  globalTeardown: '<rootDir>/test/setup/global-teardown.ts',
  testTimeout: 120000,
};
