import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints the totals as one plain line, "tests: N passed, N failed", so
 * tools that do not parse vitest's own summary can still read the result.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[]): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const testModule of testModules) {
      let failedInModule = 0;
      for (const testCase of testModule.children.allTests()) {
        const state = testCase.result().state;
        if (state === 'passed') passed += 1;
        else if (state === 'failed') failedInModule += 1;
        else skipped += 1;
      }
      // A file can fail outside its tests, in a hook or a leak check; that counts as one failure.
      failed += testModule.state() === 'failed' ? Math.max(1, failedInModule) : failedInModule;
    }
    // Printed at exit so it comes after vitest's own summary, as the last line.
    process.once('exit', () => {
      process.stdout.write(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    });
  }
}
