import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadClipTokenizer } from '../../adapters/clip';
import { CaptionRuleOptions, captionRulesFor, type CaptionRuleOptionsInput } from '../../lib/captions/options';
import {
  bannedTerms,
  byteOrderMark,
  CaptionCheckInput,
  CaptionedImage,
  CaptionRule,
  CaptionRuleContext,
  checkCaption,
  checkCaptions,
  controlCharacter,
  crlfLineEndings,
  mojibake,
  duplicateCaption,
  emptyCaption,
  folderName,
  invalidUtf8,
  missingCaption,
  multipleLines,
  orphanCaption,
  repeatedTags,
  RULE_SEVERITY,
  tokenLimit,
  triggerWordMissing,
} from '../../lib/captions/rules';
import { decodeCaption } from '../../lib/captions/text';
import type { ClipTokenizer } from '../../lib/clip/tokenizer';
import { TrainingRunInput } from '../../lib/pipeline/input';

let tokenizer: ClipTokenizer;

beforeAll(async () => {
  tokenizer = await loadClipTokenizer();
});

function contextWith(options: CaptionRuleOptionsInput = {}): CaptionRuleContext {
  return { options: CaptionRuleOptions.parse(options), tokenizer };
}

const image = (file: string, caption: string | null): CaptionedImage => ({ file, caption });

const clean: CaptionCheckInput = {
  images: [image('a.jpg', 'sks dog on a beach'), image('b.png', 'sks dog, sitting\n')],
  orphanCaptions: [],
  folders: ['10_sks dog'],
};

describe('caption rules', () => {
  it('finds nothing in a clean dataset, with every option set', () => {
    const context = contextWith({ triggerWord: 'sks', bannedTerms: ['nsfw'], maxTokenLength: 225 });
    expect(checkCaptions(clean, context)).toEqual({ issues: [], counts: { error: 0, warning: 0, info: 0 } });
  });

  it('missing-caption: an image without caption is an error naming the image and its caption file', () => {
    const issues = missingCaption(image('c.jpeg', null), contextWith());
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'missing-caption', severity: 'error', file: 'c.jpeg' });
    expect(issues[0].message).toContain('c.txt');
    expect(issues[0].message).toMatch(/class tokens/);
    expect(issues[0].fix).toContain('c.txt');
  });

  it.each([
    ['an empty file', '', /is empty: sd-scripts aborts training/],
    ['a file holding only a byte-order mark', '\ufeff', /is empty: sd-scripts aborts training/],
    ['whitespace only', '  \t\r\n \n', /only whitespace/],
    ['a blank first line', '\r\nsks dog', /first line/],
  ])('empty-caption: %s is an error naming the caption file', (_label, caption, why) => {
    const issues = emptyCaption(image('d.webp', caption), contextWith());
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'empty-caption', severity: 'error', file: 'd.txt' });
    expect(issues[0].message).toContain('d.webp');
    expect(issues[0].message).toMatch(why);
    expect(issues[0].fix).toContain('d.txt');
  });

  it('invalid-utf8: names the caption file, the bad byte and its offset; other rules skip the text', () => {
    const { text, invalidUtf8: invalid } = decodeCaption(Buffer.from('sks caf\xe9, sks caf\xe9', 'latin1'));
    const latin1: CaptionedImage = { file: 'e.bmp', caption: text, invalidUtf8: invalid };
    const issues = invalidUtf8(latin1, contextWith());
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'invalid-utf8', severity: 'error', file: 'e.txt' });
    expect(issues[0].message).toMatch(/not valid UTF-8 from byte offset 7 \(0xE9\)/);
    expect(issues[0].fix).toContain('offset 7');
    expect(checkCaption(latin1, contextWith({ triggerWord: 'dog', bannedTerms: ['caf'] })).map((i) => i.rule)).toEqual(['invalid-utf8']);
  });

  it('control-character: NUL and other controls are an error quoting the code point, its byte offset and the text around it', () => {
    const nul = image('n.png', 'sks café\u0000dog, \u001b[31mred');
    const issues = controlCharacter(nul, contextWith());
    expect(issues).toEqual([
      expect.objectContaining({
        rule: 'control-character',
        severity: 'error',
        file: 'n.txt',
        // "é" is two bytes: the NUL is the 9th character but at byte 9.
        message: 'n.txt (caption of n.png) contains the control character U+0000 (NUL) at byte offset 9, and 1 more control character: ' +
          '"sks café\\u0000dog, \\u001b[31mred"; it is invisible, yet the text encoder trains on it',
      }),
    ]);
    expect(issues[0].fix).toBe('Remove the control characters from n.txt, or rewrite the caption here in the review.');
    expect(checkCaptions({ images: [nul], orphanCaptions: [] }, contextWith()).counts.error).toBe(1);
    // Tabs and line breaks are not controls here (other rules look at line breaks); C1 controls and DEL are.
    expect(controlCharacter(image('t.png', 'sks\tdog\r\nsecond line\n'), contextWith())).toEqual([]);
    expect(controlCharacter(image('c.png', 'sks dog\u0085'), contextWith())[0].message).toContain('U+0085 (NEL) at byte offset 7:');
    expect(controlCharacter(image('d.png', '\u007f'), contextWith())[0].message).toContain('U+007F (DEL) at byte offset 0:');
  });

  it('mojibake: UTF-8 read as Windows-1252 is a warning naming the likely intended text', () => {
    expect(mojibake(image('m.png', 'sks, cafÃ© au lait, donâ€™t stop'), contextWith())).toEqual([
      expect.objectContaining({
        rule: 'mojibake',
        severity: 'warning',
        file: 'm.txt',
        message: 'm.txt looks like UTF-8 text that was read in another encoding (Windows-1252 or Latin-1): "sks, cafÃ© au lait, donâ€™t stop" probably means "sks, café au lait, don’t stop"',
      }),
    ]);
    // Real accented text, and a capital A with tilde before an ellipsis, are left alone.
    for (const caption of ['sks, café, naïve, Ångström, 日本語', 'sks, Ã… maybe', 'plain ascii']) expect(mojibake(image('n.png', caption), contextWith())).toEqual([]);
  });

  it('byte-order-mark: info, and the text after the mark is what the other rules check', () => {
    const bom = image('f.png', '\ufeffsks dog');
    expect(byteOrderMark(bom, contextWith())).toEqual([
      expect.objectContaining({ rule: 'byte-order-mark', severity: 'info', file: 'f.txt', message: expect.stringMatching(/processed copy/) }),
    ]);
    expect(byteOrderMark(image('f.png', 'sks \ufeffdog'), contextWith())).toEqual([]);
    expect(checkCaption(bom, contextWith({ triggerWord: 'sks' })).map((i) => i.rule)).toEqual(['byte-order-mark']);
  });

  it('crlf-line-endings: info for CR LF and lone CR, nothing for LF', () => {
    for (const caption of ['sks dog\r\n', 'sks dog\rmore']) {
      expect(crlfLineEndings(image('g.png', caption), contextWith())).toEqual([
        expect.objectContaining({ rule: 'crlf-line-endings', severity: 'info', file: 'g.txt' }),
      ]);
    }
    expect(crlfLineEndings(image('g.png', 'sks dog\n'), contextWith())).toEqual([]);
  });

  it('multiple-lines: a warning quoting the text sd-scripts ignores; a trailing line break is fine', () => {
    const issues = multipleLines(image('h.png', 'sks dog\r\n\r\nblue collar\n  running  \n'), contextWith());
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ rule: 'multiple-lines', severity: 'warning', file: 'h.txt' });
    expect(issues[0].message).toContain('2 more lines');
    expect(issues[0].message).toContain('"blue collar / running"');
    expect(multipleLines(image('h.png', 'sks dog\n\n  \n'), contextWith())).toEqual([]);
  });

  describe('token-limit', () => {
    // "a" is one CLIP token: 80 of them are 80 tokens.
    const eighty = Array(80).fill('A').join(' ');

    it('warns past 75 tokens when max_token_length is unset, quoting exactly what is dropped', () => {
      const issues = tokenLimit(image('i.png', eighty), contextWith());
      expect(issues).toHaveLength(1);
      expect(issues[0]).toMatchObject({ rule: 'token-limit', severity: 'warning', file: 'i.txt' });
      expect(issues[0].message).toContain('80 CLIP tokens');
      expect(issues[0].message).toContain('the first 75');
      expect(issues[0].message).toMatch(/max_token_length unset\) and silently drops the rest: "a a a a a"$/);
      expect(issues[0].fix).toContain('at least 5 tokens');
    });

    it('counts up to the limit inclusive, and reads 150 or 225 from max_token_length', () => {
      const seventyFive = Array(75).fill('a').join(' ');
      expect(tokenLimit(image('i.png', seventyFive), contextWith())).toEqual([]);
      expect(tokenLimit(image('i.png', eighty), contextWith({ maxTokenLength: 150 }))).toEqual([]);
      const long = Array(226).fill('a').join(',');
      const issues = tokenLimit(image('i.png', long), contextWith({ maxTokenLength: 225 }));
      expect(issues[0].message).toContain('451 CLIP tokens');
      expect(issues[0].message).toContain('first 225 to the text encoder (max_token_length 225)');
    });

    it('names the word a cut splits in two', () => {
      const caption = `${Array(74).fill('a').join(' ')} Antidisestablishmentarianism, tail`;
      const [found] = tokenLimit(image('i.png', caption), contextWith());
      expect(found.message).toContain('(cutting "antidisestablishmentarianism" in two)');
      expect(found.message).toMatch(/: "[a-z]+, tail"$/);
    });

    it('takes the token limit from the kohya options of the run (225 for these runs)', () => {
      const run = TrainingRunInput.parse({ runName: 'r', dataset: '/d', triggerWord: 'sks', captions: { bannedTerms: ['nsfw'] } });
      expect(CaptionRuleOptions.parse(captionRulesFor(run))).toEqual({ maxTokenLength: 225, triggerWord: 'sks', bannedTerms: ['nsfw'] });
    });

    it('refuses a max_token_length sd-scripts would refuse', () => {
      expect(CaptionRuleOptions.safeParse({ maxTokenLength: 100 }).error?.issues[0]).toMatchObject({
        path: ['maxTokenLength'],
        message: expect.stringMatching(/150 or 225/),
      });
    });
  });

  it('trigger-word-missing: whole word, any case, first line only; nothing when no trigger is set', () => {
    const context = contextWith({ triggerWord: 'sks' });
    const missing = (caption: string) => triggerWordMissing(image('j.png', caption), context).length === 1;
    expect(missing('a SKS dog')).toBe(false);
    expect(missing('sks')).toBe(false);
    expect(missing('(sks:1.2) dog')).toBe(false);
    expect(missing('sksdog on a beach')).toBe(true);
    expect(missing('a dog\nsks')).toBe(true);
    const [found] = triggerWordMissing(image('j.png', 'a dog'), context);
    expect(found).toMatchObject({ rule: 'trigger-word-missing', severity: 'error', file: 'j.txt' });
    expect(found.fix).toContain('"sks"');
    expect(triggerWordMissing(image('j.png', 'a dog'), contextWith())).toEqual([]);
    expect(triggerWordMissing(image('j.png', 'photo of OHWX   Man'), contextWith({ triggerWord: 'ohwx man' }))).toEqual([]);
    expect(triggerWordMissing(image('j.png', 'photo of ohwx woman'), contextWith({ triggerWord: 'ohwx man' }))).toHaveLength(1);
  });

  it('duplicate-caption: each caption identical (as CLIP reads it) to another is a warning naming the others', () => {
    const issues = duplicateCaption(
      {
        images: [image('k1.png', 'sks dog, beach'), image('k2.png', 'SKS  dog, beach\n'), image('k3.png', 'sks dog, forest'), image('k4.png', ' ')],
        orphanCaptions: [],
      },
      contextWith(),
    );
    expect(issues.map((i) => [i.rule, i.severity, i.file])).toEqual([
      ['duplicate-caption', 'warning', 'k1.txt'],
      ['duplicate-caption', 'warning', 'k2.txt'],
    ]);
    expect(issues[0].message).toContain('same caption as k2.txt');
    expect(issues[1].message).toContain('same caption as k1.txt');
  });

  it('repeated-tag: a warning listing each comma-separated tag that occurs more than once', () => {
    const [found, ...rest] = repeatedTags(image('l.png', '1girl, smile, Smile,1girl ,  1girl, , solo'), contextWith());
    expect(rest).toEqual([]);
    expect(found).toMatchObject({ rule: 'repeated-tag', severity: 'warning', file: 'l.txt' });
    expect(found.message).toContain('"1girl" ×3, "smile" ×2');
    expect(repeatedTags(image('l.png', '1girl, smile, solo'), contextWith())).toEqual([]);
  });

  it('banned-term: an error listing every banned word or phrase found, whole words, any case', () => {
    const context = contextWith({ bannedTerms: ['nsfw', 'bad hands', 'c++'] });
    const [found] = bannedTerms(image('m.png', 'NSFW, bad   Hands, c++ code'), context);
    expect(found).toMatchObject({ rule: 'banned-term', severity: 'error', file: 'm.txt' });
    expect(found.message).toContain('"nsfw", "bad hands", "c++"');
    expect(bannedTerms(image('m.png', 'nsfwx, bad handsome'), context)).toEqual([]);
  });

  it('folder-name: an error unless the folder is <repeats>_<name> with repeats ≥ 1', () => {
    const issues = folderName({ images: [], orphanCaptions: [], folders: ['3_sks dog', 'sks dog', '0_sks', 'x_sks', '10_'] }, contextWith());
    expect(issues.map((i) => [i.rule, i.severity, i.file])).toEqual([
      ['folder-name', 'error', 'sks dog'],
      ['folder-name', 'error', '0_sks'],
      ['folder-name', 'error', 'x_sks'],
      ['folder-name', 'error', '10_'],
    ]);
    expect(issues[0].message).toMatch(/none of its images are trained/);
  });

  it('orphan-caption: a caption without image is a warning naming the caption file', () => {
    const issues = orphanCaption({ images: clean.images, orphanCaptions: ['lonely.txt'] }, contextWith());
    expect(issues).toEqual([expect.objectContaining({ rule: 'orphan-caption', severity: 'warning', file: 'lonely.txt' })]);
    expect(issues[0].fix).toContain('lonely.png');
  });

  it('checkCaptions runs every rule, counts by severity and lists errors first, then by file', () => {
    const result = checkCaptions(
      {
        images: [image('a.jpg', null), image('b.jpg', ' '), image('c.jpg', 'fine\r\n'), image('d.jpg', 'fine')],
        orphanCaptions: ['0-orphan.txt'],
        folders: ['no-repeats'],
      },
      contextWith(),
    );
    expect(result.counts).toEqual({ error: 3, warning: 3, info: 1 });
    expect(result.issues.map((i) => [i.rule, i.file])).toEqual([
      ['missing-caption', 'a.jpg'],
      ['empty-caption', 'b.txt'],
      ['folder-name', 'no-repeats'],
      ['orphan-caption', '0-orphan.txt'],
      ['duplicate-caption', 'c.txt'],
      ['duplicate-caption', 'd.txt'],
      ['crlf-line-endings', 'c.txt'],
    ]);
  });

  it('checkCaption checks one caption with the single-caption rules only', () => {
    const context = contextWith({ triggerWord: 'sks', bannedTerms: ['ugly'] });
    expect(checkCaption(image('n.png', 'ugly dog, ugly dog'), context).map((i) => [i.severity, i.rule])).toEqual([
      ['error', 'trigger-word-missing'],
      ['error', 'banned-term'],
      ['warning', 'repeated-tag'],
    ]);
  });

  it('takes extra rules without touching the built-in ones', () => {
    const shout: CaptionRule = ({ images }) =>
      images
        .filter((i) => i.caption !== null && i.caption === i.caption.toUpperCase())
        .map((i) => ({ rule: 'missing-caption', severity: 'info', file: i.file, message: `${i.file} shouts`, fix: 'calm down' }));
    const result = checkCaptions({ images: [image('x.png', 'LOUD')], orphanCaptions: [] }, contextWith(), [shout]);
    expect(result.counts).toEqual({ error: 0, warning: 0, info: 1 });
    expect(result.issues[0].message).toBe('x.png shouts');
  });

  it('the README lists every rule with its severity', () => {
    const readme = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    for (const [rule, severity] of Object.entries(RULE_SEVERITY)) {
      expect(readme).toMatch(new RegExp(`^\\| \`${rule}\` \\| ${severity} \\|`, 'm'));
    }
  });
});

describe('decodeCaption', () => {
  it.each([
    ['valid multi-byte text', Buffer.from('café 東京 👩‍💻'), undefined],
    ['a lone continuation byte', Buffer.from([0x61, 0x80]), { offset: 1, byte: 0x80 }],
    ['an overlong encoding', Buffer.from([0x61, 0x62, 0xc0, 0xaf]), { offset: 2, byte: 0xc0 }],
    ['an encoded surrogate', Buffer.from([0xed, 0xa0, 0x80]), { offset: 0, byte: 0xed }],
    ['a code point above U+10FFFF', Buffer.from([0x20, 0xf4, 0x90, 0x80, 0x80]), { offset: 1, byte: 0xf4 }],
    ['a sequence cut short at the end', Buffer.from([0x61, 0xe6, 0x9d]), { offset: 1, byte: 0xe6 }],
  ])('%s', (_label, bytes, invalid) => {
    expect(decodeCaption(bytes).invalidUtf8).toEqual(invalid);
  });

  it('keeps a byte-order mark in the text, as Python\'s "utf-8" codec does', () => {
    expect(decodeCaption(Buffer.from('\ufeffsks')).text).toBe('\ufeffsks');
  });
});
