/**
 * The object store every stage reads and writes through: `file://` (the embedded default) or
 * `s3://` (AWS or any S3-compatible endpoint). Keys are relative, `/`-separated, never absolute
 * and never containing `..`; implementations reject anything else.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Hex SHA-256 of the content when the store knows it (S3 metadata, or computed for files). */
  sha256?: string;
  /**
   * S3's entity tag as a listing shows it, unquoted: the content's MD5 for a single-part upload
   * without KMS encryption, something that never equals an MD5 otherwise.
   */
  etag?: string;
}

export type Body = Buffer | string | Readable;

export interface PutOptions {
  /** Recorded with the object so later uploads can skip identical content without reading it. */
  sha256?: string;
  contentType?: string;
}

export interface ObjectStore {
  /** The store's root URI, e.g. `file:///data/store` or `s3://bucket/prefix`. */
  readonly uri: string;
  /** The URI of one key, e.g. `s3://bucket/prefix/models/Lora/x.safetensors`. */
  uriOf(key: string): string;
  put(key: string, body: Body, options?: PutOptions): Promise<ObjectInfo>;
  /**
   * Create only if absent (S3 `If-None-Match: *`, exclusive create on files).
   * Returns false, writing nothing, when the key already exists.
   */
  putIfAbsent(key: string, body: Buffer | string, options?: PutOptions): Promise<boolean>;
  get(key: string): Promise<Buffer>;
  getStream(key: string): Promise<Readable>;
  /** undefined when the key does not exist; `withHash` computes sha256 when not recorded. */
  head(key: string, options?: { withHash?: boolean }): Promise<ObjectInfo | undefined>;
  /** Every object below a prefix (recursive), keys relative to the store root, sorted. */
  list(prefix: string): Promise<ObjectInfo[]>;
  copy(fromKey: string, toKey: string): Promise<void>;
}

/** Raised for a key that does not exist, so callers can branch on `name`, never on message text. */
export class ObjectNotFoundError extends Error {
  override readonly name = 'ObjectNotFoundError';
  constructor(readonly uri: string) {
    super(`not found: ${uri}`);
  }
}

/**
 * The store cannot hold an object under this key (a name too long for it, a character it refuses,
 * a folder in the way): a problem of that one object, which callers can skip, not of the store.
 */
export class KeyRejectedError extends Error {
  override readonly name = 'KeyRejectedError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`invalid object key "${key}": ${reason}`);
  }
}

export function assertSafeKey(key: string): string {
  if (key === '' || key.startsWith('/') || key.includes('\\') || key.split('/').some((p) => p === '..' || p === '.')) {
    throw new KeyRejectedError(key, 'keys are relative, "/"-separated and contain no "." or ".." parts');
  }
  return key;
}
