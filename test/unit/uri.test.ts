import { parseS3Uri } from '../../lib/uri';

describe('parseS3Uri', () => {
  it.each([
    ['s3://bucket', { bucket: 'bucket', prefix: '' }],
    ['s3://bucket/', { bucket: 'bucket', prefix: '' }],
    ['s3://my.bucket-1/datasets', { bucket: 'my.bucket-1', prefix: 'datasets' }],
    ['s3://bucket/a/b/c/', { bucket: 'bucket', prefix: 'a/b/c' }],
    ['s3://bucket/a/b//', { bucket: 'bucket', prefix: 'a/b' }],
  ])('%s', (uri, expected) => {
    expect(parseS3Uri(uri)).toEqual(expected);
  });

  it.each([
    ['file:///tmp/x', /expected s3:\/\/bucket\[\/prefix\]/],
    ['S3://bucket/x', /expected s3:\/\//],
    ['s3://', /bucket "" must be 3-63/],
    ['s3://ab/x', /bucket "ab" must be 3-63/],
    ['s3://Upper/x', /bucket "Upper"/],
    ['s3://-bucket/x', /bucket "-bucket"/],
    ['s3://bucket/a//b', /prefix "a\/\/b" has an empty/],
    ['s3://bucket/a/../b', /prefix "a\/..\/b"/],
  ])('rejects %s naming the URI and the reason', (uri, reason) => {
    expect(() => parseS3Uri(uri)).toThrow(reason);
    expect(() => parseS3Uri(uri)).toThrow(`"${uri}"`);
  });
});
