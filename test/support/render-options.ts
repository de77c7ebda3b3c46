/** Preprocessing's defaults for SD 1.5 as renderImage takes them: what the image tests render with. */
import type { RenderOptions } from '../../activities/preprocess-image';
import { bucketSettings } from '../../lib/kohya/buckets';

export const SD15_RENDER_OPTIONS: RenderOptions = {
  strategy: 'center',
  size: 512,
  format: 'png',
  quality: 95,
  background: '#ffffff',
  minSide: 256,
  buckets: bucketSettings('sd15'),
};
