import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** Executor ids of test executors start with this; see services/executor/test/executor-harness.ts. */
const TEST_EXECUTOR_PREFIX = 'test-';
/** Temporary folders the suites create start with this. */
const TEST_FOLDER_PREFIX = 'cordon-';

function testContainers(): string[] {
  let output: string;
  try {
    output = execFileSync(
      'docker',
      [
        'ps',
        '-a',
        '--filter',
        'label=cordon.executor-id',
        '--format',
        '{{.ID}} {{.Label "cordon.executor-id"}}',
      ],
      { encoding: 'utf8' },
    );
  } catch {
    // Without a Docker engine no suite could have created a container.
    return [];
  }
  return output
    .split('\n')
    .filter((line) => line.split(' ')[1]?.startsWith(TEST_EXECUTOR_PREFIX) === true)
    .map((line) => line.split(' ')[0] ?? line);
}

function testFolders(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith(TEST_FOLDER_PREFIX));
}

/**
 * Fails the whole test run when any suite left a sandbox container of a test
 * executor or a temporary folder behind, whichever suite it was.
 */
export default function setup(): () => void {
  const foldersBefore = new Set(testFolders());
  return () => {
    const containers = testContainers();
    const folders = testFolders().filter((name) => !foldersBefore.has(name));
    if (containers.length > 0 || folders.length > 0) {
      throw new Error(
        `the tests left resources behind: containers [${containers.join(', ')}], temporary folders [${folders.join(', ')}]`,
      );
    }
  };
}
