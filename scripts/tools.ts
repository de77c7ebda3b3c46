/** The external binaries `scripts/setup.sh` installed (or found); tests, the demo and the stack use them. */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { PROJECT_ROOT } from '../adapters/project-paths';

const Tools = z.object({
  temporal: z.string().min(1),
  temporalTestServer: z.string().min(1),
  motoServer: z.string().min(1),
  python: z.string().min(1),
  aws: z.string().min(1),
  /** open_clip's bpe_simple_vocab_16e6.txt.gz: the CLIP tokenizer's merges. */
  clipMerges: z.string().min(1),
});
export type Tools = z.infer<typeof Tools>;

export function installedTools(): Tools {
  const file = path.join(PROJECT_ROOT, '.venv', 'tools.json');
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch {
    throw new Error(`${file} is missing: run "npm run setup" (npm test and npm run demo run it for you)`);
  }
  return Tools.parse(JSON.parse(raw));
}
