import { status } from '@grpc/grpc-js';
import { defaultTokenFile, type CordonClientError } from '@cordon/client';

const ACTIONS: Readonly<Partial<Record<status, string>>> = {
  [status.UNAUTHENTICATED]: 'the mesh did not accept the credentials',
  [status.PERMISSION_DENIED]: 'the mesh denied the call',
  [status.INVALID_ARGUMENT]: 'the request was rejected',
  [status.NOT_FOUND]: 'not found',
  [status.RESOURCE_EXHAUSTED]: 'the mesh is at capacity',
  [status.FAILED_PRECONDITION]: 'the request was refused',
  [status.DEADLINE_EXCEEDED]: 'the call timed out',
  [status.UNAVAILABLE]: 'the service is unavailable',
  [status.INTERNAL]: 'the service failed',
};

/** One plain line for a failed mesh call, naming the service, the code and the server's message. */
export function describeMeshError(error: CordonClientError): string {
  const service = error.service ?? 'mesh';
  if (error.unreachable) {
    return `cannot reach the ${service} service at ${error.address ?? 'its address'}; start the mesh with "npm start", or set CORDON_ADDRESS (or CORDON_${service.toUpperCase()}_ADDRESS) to where it runs`;
  }

  const what = ACTIONS[error.code] ?? 'the call failed';
  let line = `${service}: ${what} (${error.codeName}): ${error.message}`;
  const retryAfterMs = error.details?.retryAfterMs;
  if (retryAfterMs !== undefined) {
    line += `; retry after ${Math.ceil(retryAfterMs / 1000)} s`;
  }
  if (error.code === status.UNAUTHENTICATED) {
    line += `; cordon reads the token from CORDON_TOKEN, else ${defaultTokenFile()}`;
  }
  return line;
}
