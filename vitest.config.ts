import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'attester/**/*.test.ts'],
          // Captures every log line and scans it for secrets at the end (test/rig/log-capture.ts).
          globalSetup: ['test/rig/log-capture.ts'],
          pool: 'forks',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          globalSetup: ['test/rig/log-capture.ts', 'test/rig/global-setup.ts'],
          pool: 'forks',
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
