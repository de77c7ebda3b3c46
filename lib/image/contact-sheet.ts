/**
 * Contact sheet layout: pages of thumbnails in a grid, each labelled with its file name and
 * bucket, images with warnings framed and badged so a reviewer can look instead of read. Pure:
 * positions and an SVG overlay of the text and marks; the activity composites the pixels.
 */

/** Thumbnails fit in a square of this side (letterboxed onto the sheet's background). */
export const THUMBNAIL_SIDE = 128;
export const SHEET_BACKGROUND = '#1e1e1e';

const COLUMNS = 10;
const ROWS = 10;
export const IMAGES_PER_PAGE = COLUMNS * ROWS;

const PADDING = 12;
const LINE = 14;
const CELL_WIDTH = THUMBNAIL_SIDE + 2 * PADDING;
const CELL_HEIGHT = THUMBNAIL_SIDE + PADDING + 2 * LINE + PADDING;
const HEADER = 40;
const FONT = "font-family=\"DejaVu Sans Mono, Liberation Mono, monospace\" font-size=\"11\"";
/** A monospace character at 11 px is about 6.6 px wide. */
const CHARS_PER_LINE = Math.floor((CELL_WIDTH - 4) / 6.6);
const WARNING_COLOUR = '#ff9f1c';

export interface SheetItem {
  /** The file name shown under the thumbnail. */
  name: string;
  /** Second line: the output size. */
  detail: string;
  warnings: readonly string[];
}

export interface SheetPage {
  width: number;
  height: number;
  /** Top-left corner of each item's thumbnail square. */
  thumbnails: { left: number; top: number }[];
  /** Labels, frames and badges, drawn over the thumbnails. */
  overlay: string;
}

export function pageCount(images: number): number {
  return Math.ceil(images / IMAGES_PER_PAGE);
}

export function layoutPage(items: readonly SheetItem[], title: string): SheetPage {
  const rows = Math.max(1, Math.ceil(items.length / COLUMNS));
  const width = COLUMNS * CELL_WIDTH;
  const height = HEADER + rows * CELL_HEIGHT;
  const thumbnails: SheetPage['thumbnails'] = [];
  const marks: string[] = [`<text x="${PADDING}" y="${HEADER / 2 + 5}" fill="#ffffff" ${FONT}>${escapeXml(title)}</text>`];

  items.forEach((item, i) => {
    const left = (i % COLUMNS) * CELL_WIDTH + PADDING;
    const top = HEADER + Math.floor(i / COLUMNS) * CELL_HEIGHT + PADDING;
    thumbnails.push({ left, top });
    const textX = left - PADDING + 2;
    const nameY = top + THUMBNAIL_SIDE + LINE;
    marks.push(`<text x="${textX}" y="${nameY}" fill="#ffffff" ${FONT}>${escapeXml(fit(item.name))}</text>`);
    if (item.warnings.length === 0) {
      marks.push(`<text x="${textX}" y="${nameY + LINE}" fill="#aaaaaa" ${FONT}>${escapeXml(fit(item.detail))}</text>`);
      return;
    }
    const first = item.warnings[0];
    const more = item.warnings.length > 1 ? ` +${item.warnings.length - 1}` : '';
    marks.push(
      `<rect x="${left - 3}" y="${top - 3}" width="${THUMBNAIL_SIDE + 6}" height="${THUMBNAIL_SIDE + 6}" fill="none" stroke="${WARNING_COLOUR}" stroke-width="3"/>`,
      `<circle cx="${left + THUMBNAIL_SIDE - 10}" cy="${top + 10}" r="10" fill="${WARNING_COLOUR}"/>`,
      `<text x="${left + THUMBNAIL_SIDE - 10}" y="${top + 14}" fill="#000000" text-anchor="middle" font-weight="bold" ${FONT}>!</text>`,
      `<text x="${textX}" y="${nameY + LINE}" fill="${WARNING_COLOUR}" ${FONT}>${escapeXml(fit(`${warningLabel(first)}${more}`))}</text>`,
    );
  });
  const overlay = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${marks.join('')}</svg>`;
  return { width, height, thumbnails, overlay };
}

/**
 * A thumbnail that fits in `side`², from decoded raw pixels (RGB, or more channels with the extras
 * ignored), of the `region` kept. Each thumbnail pixel averages four samples spread over the source
 * pixels it covers: enough for a contact sheet and a perceptual hash, at a fraction of the cost of
 * filtering every source pixel.
 */
export function sampleThumbnail(
  pixels: Uint8Array,
  stride: number,
  channels: number,
  region: { left: number; top: number; width: number; height: number },
  side: number,
): { data: Uint8Array; width: number; height: number } {
  const scale = Math.min(1, side / Math.max(region.width, region.height));
  const width = Math.max(1, Math.round(region.width * scale));
  const height = Math.max(1, Math.round(region.height * scale));
  const samplesAt = (cell: number, cells: number, extent: number, offset: number) => {
    const start = (cell * extent) / cells;
    const size = extent / cells;
    return [offset + Math.floor(start + size / 4), offset + Math.floor(start + (3 * size) / 4)];
  };
  const columns = Array.from({ length: width }, (_, x) => samplesAt(x, width, region.width, region.left));
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const [y0, y1] = samplesAt(y, height, region.height, region.top);
    for (let x = 0; x < width; x++) {
      const [x0, x1] = columns[x];
      const a = (y0 * stride + x0) * channels;
      const b = (y0 * stride + x1) * channels;
      const c = (y1 * stride + x0) * channels;
      const d = (y1 * stride + x1) * channels;
      const o = (y * width + x) * 3;
      for (let k = 0; k < 3; k++) data[o + k] = (pixels[a + k] + pixels[b + k] + pixels[c + k] + pixels[d + k] + 2) >> 2;
    }
  }
  return { data, width, height };
}

/** A canvas of raw RGB pixels filled with one colour. */
export function rgbCanvas(width: number, height: number, hex: string): Uint8Array {
  const canvas = new Uint8Array(width * height * 3);
  const colour = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  canvas.set(colour);
  // Doubling copies: log2(size) native copies instead of a loop over every pixel.
  for (let filled = 3; filled < canvas.length; filled *= 2) canvas.copyWithin(filled, 0, Math.min(filled, canvas.length - filled));
  return canvas;
}

/** Copies a raw RGB picture into a raw RGB canvas at (left, top); it must fit. */
export function paste(canvas: Uint8Array, canvasWidth: number, picture: Uint8Array, width: number, height: number, left: number, top: number): void {
  for (let y = 0; y < height; y++) {
    canvas.set(picture.subarray(y * width * 3, (y + 1) * width * 3), ((top + y) * canvasWidth + left) * 3);
  }
}

/** Warnings read `<short label>: <explanation>`; the sheet shows the label. */
export function warningLabel(warning: string): string {
  const colon = warning.indexOf(': ');
  return colon === -1 ? warning : warning.slice(0, colon);
}

/** Shortened in the middle, where long camera names differ least: `IMG_2024…_0042.jpg`. */
function fit(text: string): string {
  if (text.length <= CHARS_PER_LINE) return text;
  const tail = Math.floor((CHARS_PER_LINE - 1) / 2);
  return `${text.slice(0, CHARS_PER_LINE - 1 - tail)}…${text.slice(text.length - tail)}`;
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}
