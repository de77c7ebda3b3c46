/**
 * Turns infrastructure errors into Temporal's retry language: AWS errors are classified by their
 * name (never by message text); fatal ones become non-retryable failures that keep AWS's message.
 */
import { ApplicationFailure } from '@temporalio/common';
import { classifyAwsError } from '../lib/aws-errors';

export async function withClassifiedErrors<T>(what: string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof ApplicationFailure || !(err instanceof Error)) throw err;
    if (classifyAwsError(err) === 'fatal' && isAwsServiceError(err)) {
      throw ApplicationFailure.create({
        message: `${what}: ${err.name}: ${err.message}`,
        type: err.name,
        nonRetryable: true,
        cause: err,
      });
    }
    throw err;
  }
}

/** AWS SDK service errors carry `$metadata`; local programming errors stay retryable as they were. */
function isAwsServiceError(err: Error): boolean {
  return '$metadata' in err;
}
