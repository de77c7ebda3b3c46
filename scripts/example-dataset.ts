/**
 * The embedded example dataset: small synthetic pictures (drawn here, nothing copyrighted) with a
 * caption each, in the flat "images + .txt beside them" form users start from.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import sharp from 'sharp';

const COLOURS = ['#d1495b', '#edae49', '#00798c', '#30638e', '#6a4c93', '#8ac926'];
const SHAPES = ['circle', 'square', 'triangle'] as const;

export interface ExampleDatasetOptions {
  count?: number;
  triggerWord?: string;
  /** Leave the last image without a caption: a caption error that sends the run to review. */
  missingCaption?: boolean;
  /** Multiplies the pictures' sides: camera-sized images make preprocessing take real time. */
  scale?: number;
  /**
   * Standard deviation of Gaussian grain laid over each picture, as a camera sensor leaves it:
   * flat shapes compress to almost nothing, grain 8 gives photo-sized files (~400 KB per 512² PNG).
   */
  grain?: number;
}

export async function writeExampleDataset(dir: string, options: ExampleDatasetOptions = {}): Promise<string[]> {
  const { count = 6, triggerWord = 'lrdemo', missingCaption = false, scale = 1, grain = 0 } = options;
  await fs.mkdir(dir, { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const shape = SHAPES[i % SHAPES.length];
    const fill = COLOURS[i % COLOURS.length];
    const background = COLOURS[(i + 3) % COLOURS.length];
    // Mixed sizes and orientations, as real photo folders have.
    const [width, height] = (i % 2 === 0 ? [768, 640] : [600, 900]).map((side) => side * scale);
    // Each picture a little off-centre in its own way: no two are pixel-identical (preprocessing
    // drops exact duplicates) for the first 17,000 or so.
    const [dx, dy] = [((i % 61) - 30) * 2 * scale, ((Math.floor(i / 61) % 47) - 23) * 2 * scale];
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
      <rect width="100%" height="100%" fill="${background}"/>
      <g transform="translate(${dx} ${dy})">${shapeSvg(shape, width, height, fill)}</g>
    </svg>`;
    const name = `example-${String(i + 1).padStart(2, '0')}`;
    const picture = sharp(Buffer.from(svg));
    if (grain > 0) picture.composite([{ input: await grainOf(width, height, grain), raw: { width, height, channels: 3 }, blend: 'overlay' }]);
    await picture.jpeg({ quality: 90 }).toFile(path.join(dir, `${name}.jpg`));
    if (!(missingCaption && i === count - 1)) {
      await fs.writeFile(path.join(dir, `${name}.txt`), `${triggerWord}, a ${colourName(fill)} ${shape} on a plain background\n`);
    }
    names.push(`${name}.jpg`);
  }
  return names;
}

/** Mid-grey noise: under an overlay blend it leaves the colours as they are, only grainy. */
function grainOf(width: number, height: number, sigma: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma } } }).raw().toBuffer();
}

function shapeSvg(shape: (typeof SHAPES)[number], w: number, h: number, fill: string): string {
  const r = Math.min(w, h) / 4;
  const cx = w / 2;
  const cy = h / 2;
  if (shape === 'circle') return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`;
  if (shape === 'square') return `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${fill}"/>`;
  return `<polygon points="${cx},${cy - r} ${cx + r},${cy + r} ${cx - r},${cy + r}" fill="${fill}"/>`;
}

function colourName(hex: string): string {
  return { '#d1495b': 'red', '#edae49': 'yellow', '#00798c': 'teal', '#30638e': 'blue', '#6a4c93': 'purple', '#8ac926': 'green' }[hex] ?? 'coloured';
}
