/**
 * Contact sheets: every kept image as a labelled thumbnail, pages of PNG beside the manifest.
 * Thumbnails come from the strips the batches wrote, so no training image is decoded again.
 */
import sharp from 'sharp';
import type { ObjectStore } from '../adapters/store/types';
import { IMAGES_PER_PAGE, layoutPage, pageCount, paste, rgbCanvas, SHEET_BACKGROUND, THUMBNAIL_SIDE, type SheetItem } from '../lib/image/contact-sheet';
import { contactSheetKeyOf, thumbnailStripKeyOf } from '../lib/image/stage-files';

export interface SheetEntry extends SheetItem {
  /** Where the thumbnail is: slot `slot` of batch `batch`'s strip. */
  batch: number;
  slot: number;
}

const THUMBNAIL_BYTES = THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3;

/** Stacks a batch's letterboxed thumbnails top to bottom into one JPEG (at most 511 fit its height limit). */
export async function encodeThumbnailStrip(thumbnails: readonly Buffer[]): Promise<Buffer> {
  return sharp(Buffer.concat(thumbnails), { raw: { width: THUMBNAIL_SIDE, height: THUMBNAIL_SIDE * thumbnails.length, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

/** Writes the pages and returns their keys; entries are in manifest order. */
export async function writeContactSheets(
  store: ObjectStore,
  runId: string,
  entries: readonly SheetEntry[],
  onPage: (imagesDone: number) => void,
): Promise<string[]> {
  const pages = pageCount(entries.length);
  const keys: string[] = [];
  // Entries come batch after batch: one decoded strip at a time is all the memory this needs.
  let strip: { batch: number; pixels: Buffer } | undefined;
  const thumbnailOf = async (entry: SheetEntry): Promise<Buffer> => {
    if (strip?.batch !== entry.batch) {
      const encoded = await store.get(thumbnailStripKeyOf(runId, entry.batch));
      strip = { batch: entry.batch, pixels: await sharp(encoded).raw().toBuffer() };
    }
    return strip.pixels.subarray(entry.slot * THUMBNAIL_BYTES, (entry.slot + 1) * THUMBNAIL_BYTES);
  };

  for (let page = 0; page < pages; page++) {
    const items = entries.slice(page * IMAGES_PER_PAGE, (page + 1) * IMAGES_PER_PAGE);
    const first = page * IMAGES_PER_PAGE + 1;
    const title = `${runId} · page ${page + 1}/${pages} · images ${first}-${first + items.length - 1} of ${entries.length} · orange frame: warnings (listed in the manifest)`;
    const layout = layoutPage(items, title);
    // Thumbnails are copied in memory: compositing each one would blend the whole page every time.
    const canvas = rgbCanvas(layout.width, layout.height, SHEET_BACKGROUND);
    for (const [i, item] of items.entries()) {
      const { left, top } = layout.thumbnails[i];
      paste(canvas, layout.width, await thumbnailOf(item), THUMBNAIL_SIDE, THUMBNAIL_SIDE, left, top);
    }
    const png = await sharp(canvas, { raw: { width: layout.width, height: layout.height, channels: 3 } })
      .composite([{ input: Buffer.from(layout.overlay), left: 0, top: 0 }])
      // The SVG overlay brings an alpha channel the opaque sheet does not need.
      .removeAlpha()
      .png()
      .toBuffer();
    const key = contactSheetKeyOf(runId, page);
    await store.put(key, png, { contentType: 'image/png' });
    keys.push(key);
    onPage(first + items.length - 1);
  }
  return keys;
}
