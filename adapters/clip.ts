/**
 * The CLIP tokenizer with its merges read from disk: open_clip's bpe_simple_vocab_16e6.txt.gz,
 * which the setup installs (`installedTools().clipMerges`) or LORA_CLIP_MERGES names. Loaded once per process and path.
 */
import { readFile } from 'node:fs/promises';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { ClipTokenizer } from '../lib/clip/tokenizer';
import { installedTools } from '../scripts/tools';

const gunzipAsync = promisify(gunzip);
const loaded = new Map<string, Promise<ClipTokenizer>>();

/** LORA_CLIP_MERGES names the file where there is no project venv (the worker image). */
export function loadClipTokenizer(mergesPath: string = process.env.LORA_CLIP_MERGES ?? installedTools().clipMerges): Promise<ClipTokenizer> {
  let tokenizer = loaded.get(mergesPath);
  if (!tokenizer) {
    tokenizer = (async () => {
      const merges = await readFile(mergesPath).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read the CLIP merges ${mergesPath} (${err.code ?? err.message}): run "npm run setup"`);
      });
      return new ClipTokenizer((await gunzipAsync(merges)).toString('utf8'));
    })();
    // A failed load is not cached: the next call tries again.
    tokenizer.catch(() => loaded.delete(mergesPath));
    loaded.set(mergesPath, tokenizer);
  }
  return tokenizer;
}
