/** Opens the object store a URI names: `file://` or a plain path (FileStore), `s3://` (S3Store). */
import type { S3Client } from '@aws-sdk/client-s3';
import { fileURLToPath } from 'node:url';
import { FileStore } from './file';
import { S3Store } from './s3';
import type { ObjectStore } from './types';

export function openStore(uri: string, aws: { s3: S3Client }): ObjectStore {
  if (uri.startsWith('file://')) return new FileStore(fileURLToPath(uri));
  if (uri.startsWith('s3://')) return new S3Store(uri, aws.s3);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(uri)?.[1];
  if (scheme !== undefined) {
    throw new Error(`unsupported store URI "${uri}": scheme "${scheme}" is not one of file://, s3:// (or a plain local path)`);
  }
  if (uri === '') throw new Error('store URI is empty: expected a file:// or s3:// URI or a local path');
  return new FileStore(uri);
}
