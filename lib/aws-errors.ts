/**
 * Which AWS failures are worth retrying. Pure (no AWS imports) so activities, adapters and tests
 * share one rule: decide by the error's `name`, its `code` (Node network errors), the HTTP status
 * in `$metadata` and the SDK's own `$retryable` flag; message text is for humans and changes.
 */

export type AwsErrorClass = 'retryable' | 'fatal';

/** Throttling, capacity and server-side failures: the same request can succeed later. */
export const RETRYABLE_ERROR_NAMES: ReadonlySet<string> = new Set([
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'ProvisionedThroughputExceededException',
  // SageMaker: the account's instance quota is in use; it frees up when other jobs end.
  'ResourceLimitExceeded',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
  'InternalError',
  'InternalServerError',
  'InternalServerException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  // S3 conditional writes: a concurrent conditional request on the same key; AWS says retry.
  'ConditionalRequestConflict',
]);

/** Permissions, credentials, bad input and missing resources: retrying cannot fix them. */
export const FATAL_ERROR_NAMES: ReadonlySet<string> = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'InvalidAccessKeyId',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'InvalidSignatureException',
  'ExpiredToken',
  'ExpiredTokenException',
  'ValidationException',
  'ValidationError',
  'InvalidParameterValue',
  'InvalidRequest',
  'InvalidBucketName',
  'ResourceNotFound',
  'ResourceNotFoundException',
  'NoSuchBucket',
  'NoSuchKey',
  'NotFound',
  'ResourceInUse',
  'PreconditionFailed',
  'EntityTooLarge',
]);

/** Node socket and DNS failures (`err.code`, sometimes the name): the request may not have reached AWS. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
]);

interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/**
 * Known names win over status codes (S3 throttles with 503 SlowDown, SageMaker with a 400
 * ThrottlingException). An error with neither a known name nor a status stays retryable, so an
 * unexpected failure gets Temporal's bounded retries instead of failing the run at once.
 */
export function classifyAwsError(err: unknown): AwsErrorClass {
  if (typeof err !== 'object' || err === null) return 'retryable';
  const { name, code, $retryable, $metadata } = err as AwsLikeError;
  if (typeof name === 'string') {
    if (FATAL_ERROR_NAMES.has(name)) return 'fatal';
    if (RETRYABLE_ERROR_NAMES.has(name)) return 'retryable';
  }
  if ([code, name].some((c) => typeof c === 'string' && NETWORK_ERROR_CODES.has(c))) return 'retryable';
  if ($retryable) return 'retryable';
  const status = $metadata?.httpStatusCode;
  if (typeof status === 'number') {
    if (status >= 500 || status === 429) return 'retryable';
    if (status >= 400) return 'fatal';
  }
  return 'retryable';
}
