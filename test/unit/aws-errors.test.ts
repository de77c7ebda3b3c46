import { classifyAwsError, FATAL_ERROR_NAMES, RETRYABLE_ERROR_NAMES } from '../../lib/aws-errors';

/** Shaped like an AWS SDK v3 service exception. */
function serviceError(name: string, httpStatusCode?: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode }, ...extra });
}

describe('classifyAwsError', () => {
  it.each(['ThrottlingException', 'Throttling', 'SlowDown', 'RequestLimitExceeded', 'ResourceLimitExceeded', 'ServiceUnavailable', 'InternalFailure'])(
    '%s is retryable',
    (name) => {
      expect(classifyAwsError(serviceError(name, 400))).toBe('retryable');
    },
  );

  it.each(['AccessDenied', 'AccessDeniedException', 'ValidationException', 'ResourceNotFound', 'NoSuchBucket', 'InvalidAccessKeyId', 'SignatureDoesNotMatch'])(
    '%s is fatal',
    (name) => {
      expect(classifyAwsError(serviceError(name, 403))).toBe('fatal');
    },
  );

  it('lets a known name win over the status code', () => {
    // S3 throttles with 503 SlowDown; SageMaker throttles with a 400.
    expect(classifyAwsError(serviceError('SlowDown', 503))).toBe('retryable');
    expect(classifyAwsError(serviceError('ThrottlingException', 400))).toBe('retryable');
    expect(classifyAwsError(serviceError('AccessDenied', 500))).toBe('fatal');
  });

  it('falls back to the HTTP status for unknown names', () => {
    expect(classifyAwsError(serviceError('SomethingNew', 500))).toBe('retryable');
    expect(classifyAwsError(serviceError('SomethingNew', 503))).toBe('retryable');
    expect(classifyAwsError(serviceError('SomethingNew', 429))).toBe('retryable');
    expect(classifyAwsError(serviceError('SomethingNew', 400))).toBe('fatal');
    expect(classifyAwsError(serviceError('SomethingNew', 404))).toBe('fatal');
  });

  it('honours the SDK $retryable flag on otherwise fatal-looking statuses', () => {
    expect(classifyAwsError(serviceError('SomethingNew', 400, { $retryable: { throttling: true } }))).toBe('retryable');
  });

  it('treats network failures as retryable', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const refused = Object.assign(new Error('connect failed'), { code: 'ECONNREFUSED' });
    const timeout = Object.assign(new Error('timed out'), { name: 'TimeoutError' });
    expect([reset, refused, timeout].map(classifyAwsError)).toEqual(['retryable', 'retryable', 'retryable']);
  });

  it('ignores message text', () => {
    const misleading = serviceError('AccessDenied', 403);
    misleading.message = 'Rate exceeded, please retry (ThrottlingException)';
    expect(classifyAwsError(misleading)).toBe('fatal');
    const plain = new Error('AccessDenied');
    expect(classifyAwsError(plain)).toBe('retryable');
  });

  it('keeps unknown errors without status retryable', () => {
    expect(classifyAwsError(new Error('boom'))).toBe('retryable');
    expect(classifyAwsError('a string')).toBe('retryable');
    expect(classifyAwsError(null)).toBe('retryable');
  });

  it('has no name in both lists', () => {
    expect([...RETRYABLE_ERROR_NAMES].filter((name) => FATAL_ERROR_NAMES.has(name))).toEqual([]);
  });
});
