/**
 * `s3://bucket/prefix` object store, for AWS or any S3-compatible endpoint. Content hashes live in
 * the object's user metadata (`x-amz-meta-sha256`) so uploads can skip identical content by a HEAD.
 */
import {
  CopyObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { Readable, Transform, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseS3Uri } from '../../lib/uri';
import { assertSafeKey, Body, KeyRejectedError, ObjectInfo, ObjectNotFoundError, ObjectStore, PutOptions } from './types';
import { sha256Hex } from '../../lib/hash';

/** S3 lower-cases user metadata names; this is the one we write and read. */
const SHA256_METADATA = 'sha256';

export class S3Store implements ObjectStore {
  readonly uri: string;
  readonly bucket: string;
  /** Key prefix of the store root, without a trailing "/"; "" for the bucket root. */
  readonly prefix: string;

  constructor(
    uri: string,
    private readonly client: S3Client,
  ) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Uri(uri));
    this.uri = `s3://${this.bucket}${this.prefix === '' ? '' : `/${this.prefix}`}`;
  }

  uriOf(key: string): string {
    return `s3://${this.bucket}/${this.s3Key(key)}`;
  }

  async put(key: string, body: Body, options?: PutOptions): Promise<ObjectInfo> {
    try {
      return await this.write(key, body, options);
    } catch (err) {
      // S3's one error about the key itself rather than the store.
      throw errorName(err) === 'KeyTooLongError' ? new KeyRejectedError(key, 'longer than the 1,024 bytes S3 allows') : err;
    }
  }

  private async write(key: string, body: Body, options?: PutOptions): Promise<ObjectInfo> {
    const s3Key = this.s3Key(key);
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const bytes = Buffer.from(body);
      const sha256 = options?.sha256 ?? sha256Hex(bytes);
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: s3Key,
          Body: bytes,
          ContentType: options?.contentType,
          Metadata: { [SHA256_METADATA]: sha256 },
        }),
      );
      return { key, size: bytes.length, sha256 };
    }
    // Metadata is fixed when the (multipart) upload starts, so a stream's hash is recorded only
    // when the caller knows it up front; the one computed on the way is still returned.
    const hash = createHash('sha256');
    let size = 0;
    const measured = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    // A source error destroys `measured`, which fails the upload with that error; the callback
    // only keeps the pipeline from reporting it a second time as unhandled.
    streamPipeline(body, measured, () => undefined);
    try {
      await new Upload({
        client: this.client,
        params: {
          Bucket: this.bucket,
          Key: s3Key,
          Body: measured,
          ContentType: options?.contentType,
          Metadata: options?.sha256 ? { [SHA256_METADATA]: options.sha256 } : undefined,
        },
      }).done();
    } catch (err) {
      measured.destroy();
      throw err;
    }
    return { key, size, sha256: options?.sha256 ?? hash.digest('hex') };
  }

  async putIfAbsent(key: string, body: Buffer | string, options?: PutOptions): Promise<boolean> {
    const bytes = Buffer.from(body);
    try {
      // S3 evaluates `If-None-Match: *` atomically: of two concurrent writers exactly one wins.
      // moto 5.2.5 honours it too (412 PreconditionFailed, though without that atomicity), so no
      // HEAD pre-check is needed.
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.s3Key(key),
          Body: bytes,
          IfNoneMatch: '*',
          ContentType: options?.contentType,
          Metadata: { [SHA256_METADATA]: options?.sha256 ?? sha256Hex(bytes) },
        }),
      );
      return true;
    } catch (err) {
      if (errorName(err) === 'PreconditionFailed' || httpStatus(err) === 412) return false;
      throw err;
    }
  }

  async get(key: string): Promise<Buffer> {
    const response = await this.getObject(key);
    return Buffer.from(await response.transformToByteArray());
  }

  async getStream(key: string): Promise<Readable> {
    const response = await this.getObject(key);
    // In Node the SDK's body is an http.IncomingMessage, i.e. a Readable.
    if (!(response instanceof Readable)) throw new Error(`GetObject for ${this.uriOf(key)} returned no Node stream body`);
    return response;
  }

  async head(key: string, options?: { withHash?: boolean }): Promise<ObjectInfo | undefined> {
    let response;
    try {
      response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw withHeadErrorName(err, this.uriOf(key));
    }
    const info: ObjectInfo = { key, size: response.ContentLength ?? 0 };
    const recorded = response.Metadata?.[SHA256_METADATA];
    if (recorded) info.sha256 = recorded;
    else if (options?.withHash) info.sha256 = await this.hashOf(key);
    return info;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    // Like a directory listing: "models" lists models/…, never "models2/…".
    const below = prefix.replace(/\/+$/, '');
    const listPrefix = below === '' ? this.rootPrefix() : `${this.s3Key(below)}/`;
    const out: ObjectInfo[] = [];
    for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: listPrefix })) {
      for (const object of page.Contents ?? []) {
        // Keys ending in "/" are console-made folder markers, not objects a store key can name.
        if (object.Key === undefined || object.Key.endsWith('/')) continue;
        out.push({ key: object.Key.slice(this.rootPrefix().length), size: object.Size ?? 0, etag: object.ETag?.replace(/"/g, '') });
      }
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async copy(fromKey: string, toKey: string): Promise<void> {
    const source = `${this.bucket}/${this.s3Key(fromKey)}`.split('/').map(encodeURIComponent).join('/');
    try {
      // The default MetadataDirective COPY keeps the sha256 metadata. Single-request copies are
      // limited to 5 GB, far above a LoRA's size.
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.s3Key(toKey), CopySource: source }));
    } catch (err) {
      throw isNotFound(err) ? new ObjectNotFoundError(this.uriOf(fromKey)) : err;
    }
  }

  private s3Key(key: string): string {
    return `${this.rootPrefix()}${assertSafeKey(key)}`;
  }

  private rootPrefix(): string {
    return this.prefix === '' ? '' : `${this.prefix}/`;
  }

  private async getObject(key: string) {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.s3Key(key) }));
      if (!response.Body) throw new Error(`GetObject for ${this.uriOf(key)} returned no body`);
      return response.Body;
    } catch (err) {
      throw isNotFound(err) ? new ObjectNotFoundError(this.uriOf(key)) : err;
    }
  }

  private async hashOf(key: string): Promise<string> {
    const hash = createHash('sha256');
    await pipeline(await this.getStream(key), hash);
    return hash.digest('hex');
  }
}

function errorName(err: unknown): unknown {
  return (err as { name?: unknown } | null)?.name;
}

function httpStatus(err: unknown): unknown {
  return (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
}

/**
 * HeadObject answers without a body, so the SDK cannot read S3's error code and names a 403
 * "Unknown"/"Forbidden" with message "UnknownError". Give it the name S3 means, AccessDenied, and
 * a message naming the object, keeping `$metadata` so it still classifies as an AWS error.
 */
function withHeadErrorName(err: unknown, uri: string): unknown {
  if (httpStatus(err) !== 403 || !(err instanceof Error)) return err;
  return Object.assign(err, { name: 'AccessDenied', message: `access denied to ${uri} (HeadObject returned 403)` });
}

/**
 * A missing key: GetObject/CopyObject say NoSuchKey, HeadObject (no body) only NotFound / 404, so
 * for head a missing bucket also reads as a missing key.
 */
function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (httpStatus(err) === 404 && name !== 'NoSuchBucket');
}
