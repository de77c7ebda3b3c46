import { escapeXml, IMAGES_PER_PAGE, layoutPage, pageCount, paste, rgbCanvas, sampleThumbnail, THUMBNAIL_SIDE, warningLabel } from '../../lib/image/contact-sheet';

describe('contact sheet layout', () => {
  const items = [
    { name: 'a.jpg', detail: '512×512', warnings: [] },
    { name: 'IMG_20240101_123456_very_long_camera_name_0042.jpg', detail: '512×512', warnings: [] },
    { name: 'small <&> "one".png', detail: '512×512', warnings: ['upscaled 2.00×: 256×256 is smaller than the 512×512 target', 'near-duplicate: looks like a.jpg'] },
  ];
  const page = layoutPage(items, 'run-1 · page 1/1');

  it('places thumbnails in a grid without overlap', () => {
    expect(page.thumbnails).toHaveLength(3);
    const [a, b] = page.thumbnails;
    expect(a.top).toBe(b.top);
    expect(b.left - a.left).toBeGreaterThanOrEqual(THUMBNAIL_SIDE);
    for (const t of page.thumbnails) {
      expect(t.left + THUMBNAIL_SIDE).toBeLessThanOrEqual(page.width);
      expect(t.top + THUMBNAIL_SIDE).toBeLessThanOrEqual(page.height);
    }
  });

  it('labels every image, shortening long names in the middle', () => {
    expect(page.overlay).toContain('>a.jpg<');
    const shortened = /\>(IMG_2024[^<]*…[^<]*_0042\.jpg)</.exec(page.overlay)?.[1];
    expect(shortened).toBeDefined();
    expect(shortened!.length).toBeLessThan(items[1].name.length);
    expect(page.overlay).toContain('run-1 · page 1/1');
  });

  it('frames and badges images with warnings, naming the first and counting the rest', () => {
    expect(page.overlay.match(/<rect /g)).toHaveLength(1);
    expect(page.overlay.match(/<circle /g)).toHaveLength(1);
    expect(page.overlay).toContain('>upscaled 2.00× +1<');
  });

  it('escapes file names for the SVG', () => {
    expect(page.overlay).toContain('small &lt;&amp;&gt; &quot;one&quot;.png');
    expect(escapeXml(`'`)).toBe('&apos;');
  });

  it('splits large datasets into pages', () => {
    expect(pageCount(0)).toBe(0);
    expect(pageCount(IMAGES_PER_PAGE)).toBe(1);
    expect(pageCount(IMAGES_PER_PAGE + 1)).toBe(2);
  });

  it('shows the short label of a warning', () => {
    expect(warningLabel('aspect 5.0:1: beyond 1:4, the crop keeps 20% of the picture')).toBe('aspect 5.0:1');
    expect(warningLabel('no label here')).toBe('no label here');
  });
});

describe('thumbnails', () => {
  it('fill a canvas with a colour and paste pictures into it', () => {
    const canvas = rgbCanvas(4, 3, '#102030');
    expect([...canvas.subarray(0, 6)]).toEqual([16, 32, 48, 16, 32, 48]);
    expect([...canvas.subarray(33, 36)]).toEqual([16, 32, 48]);
    paste(canvas, 4, new Uint8Array([1, 2, 3, 4, 5, 6]), 2, 1, 1, 2);
    expect([...canvas.subarray(27, 33)]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('sample only the kept region, fitting the longer side', () => {
    // 300×200 RGB: a 100-pixel red margin on the left, then the kept 200×200 region: green above
    // blue. The thumbnail of the region must show no red at all.
    const width = 300;
    const pixels = new Uint8Array(width * 200 * 3);
    for (let y = 0; y < 200; y++) {
      for (let x = 0; x < width; x++) pixels.set(x < 100 ? [255, 0, 0] : y < 100 ? [0, 255, 0] : [0, 0, 255], (y * width + x) * 3);
    }
    const thumb = sampleThumbnail(pixels, width, 3, { left: 100, top: 0, width: 200, height: 200 }, 50);
    expect([thumb.width, thumb.height]).toEqual([50, 50]);
    const at = (x: number, y: number) => [...thumb.data.subarray((y * 50 + x) * 3, (y * 50 + x) * 3 + 3)];
    expect(at(0, 0)).toEqual([0, 255, 0]);
    expect(at(49, 49)).toEqual([0, 0, 255]);
    expect(Array.from({ length: 50 }, (_, y) => at(0, y)[0])).toEqual(new Array(50).fill(0));
    expect(sampleThumbnail(pixels, width, 3, { left: 0, top: 0, width: 300, height: 200 }, 60)).toMatchObject({ width: 60, height: 40 });
  });
});
