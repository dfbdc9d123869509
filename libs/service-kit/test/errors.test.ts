import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CordonError, readErrorDetails, toBoundaryStatus } from '@cordon/service-kit';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

describe('toBoundaryStatus', () => {
  it('sends a CordonError message and its details to the client', () => {
    const error = new CordonError(
      status.INVALID_ARGUMENT,
      'limits.memory_bytes 2147483648 is above this server maximum 1073741824',
      {
        details: {
          fieldViolations: [{ field: 'limits.memory_bytes', description: 'above maximum' }],
        },
        cause: new Error('not for the client'),
      },
    );

    const boundary = toBoundaryStatus(error, TRACE_ID);

    expect(boundary.expected).toBe(true);
    expect(boundary.status.code).toBe(status.INVALID_ARGUMENT);
    expect(boundary.status.details).toBe(
      'limits.memory_bytes 2147483648 is above this server maximum 1073741824',
    );
    expect(readErrorDetails(boundary.status.metadata)?.fieldViolations).toEqual([
      { field: 'limits.memory_bytes', description: 'above maximum' },
    ]);
  });

  it('hides the message of an unexpected error behind INTERNAL', () => {
    const boundary = toBoundaryStatus(
      new Error('open /home/ci/.docker/config.json failed'),
      TRACE_ID,
    );

    expect(boundary.expected).toBe(false);
    expect(boundary.status).toEqual({
      code: status.INTERNAL,
      details: `internal error (trace id ${TRACE_ID}); the server log has the details`,
    });
  });

  it('maps a refused connection deep in the cause chain to UNAVAILABLE', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED /var/run/docker.sock'), {
      code: 'ECONNREFUSED',
    });
    const wrapped = new Error('create container failed', {
      cause: new Error('request failed', { cause: refused }),
    });

    const boundary = toBoundaryStatus(wrapped, undefined);

    expect(boundary.status.code).toBe(status.UNAVAILABLE);
    expect(boundary.status.details).toBe(
      'a service this call depends on is unavailable; try again later',
    );
  });

  it('stops walking a cause chain that loops', () => {
    const first = new Error('first');
    const second = new Error('second', { cause: first });
    Object.assign(first, { cause: second });

    expect(toBoundaryStatus(first, undefined).status.code).toBe(status.INTERNAL);
  });
});
