/** SHA-256 as lowercase hex: content identity for images, captions, manifests and LoRAs. */
import { createHash } from 'node:crypto';

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** MD5 as lowercase hex: only to compare with S3 entity tags, never as an identity of our own. */
export function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/**
 * The same on libuv's thread pool (WebCrypto): hashing a camera JPEG on the event loop would hold
 * up every other image of the batch for milliseconds.
 */
export async function sha256HexOffThread(data: Buffer): Promise<string> {
  return Buffer.from(await crypto.subtle.digest('SHA-256', data)).toString('hex');
}
