import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'libs/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'cli/test/**/*.test.ts',
      'sandbox-images/test/**/*.test.ts',
      'test/**/*.test.ts',
    ],
    pool: 'forks',
    globalSetup: ['./test/support/leak-check.ts'],
    setupFiles: ['./test/support/open-sockets.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
