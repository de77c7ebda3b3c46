/** Store and dataset URIs. Pure: the workflow, the client and the adapters parse them the same way. */

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing "/"; "" for the bucket root. */
  prefix: string;
}

// S3 bucket naming rules: 3-63 of lower-case letters, digits, "." and "-", letter or digit at both ends.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** `s3://bucket/some/prefix/` → `{ bucket: 'bucket', prefix: 'some/prefix' }`. */
export function parseS3Uri(uri: string): S3Location {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(uri);
  if (!match) throw new Error(`invalid S3 URI "${uri}": expected s3://bucket[/prefix]`);
  const bucket = match[1] ?? '';
  if (!BUCKET.test(bucket)) {
    throw new Error(
      `invalid S3 URI "${uri}": bucket "${bucket}" must be 3-63 lower-case letters, digits, "." or "-", starting and ending with a letter or digit`,
    );
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '' && prefix.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new Error(`invalid S3 URI "${uri}": the prefix "${prefix}" has an empty, "." or ".." part`);
  }
  return { bucket, prefix };
}
