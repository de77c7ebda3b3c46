/** The review's pure parts: payload schemas, the gate rules behind the validators, and the CLI's rendering. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { editPayloadOf } from '../../client/review-commands';
import { pageOf, pageOfIssues, reviewLines, type IssuePage } from '../../client/review-render';
import { issuesOfImage, type ReportIssue, type ReviewDetails } from '../../client/review';
import { formatZodError } from '../../lib/pipeline/input';
import {
  ApprovePayload,
  approveRefusal,
  CaptionText,
  closedRefusal,
  datasetNameOf,
  EditCaptionsPayload,
  FolderName,
  IGNORED_SIGNALS_KEPT,
  ImageName,
  imageRefOf,
  MAX_CAPTION_BYTES,
  rememberIgnored,
  RejectPayload,
  stageAfterReview,
  tallyEdits,
  utf8Length,
  type ReviewGate,
  type ReviewState,
} from '../../lib/pipeline/review';

function problem(schema: { safeParse(v: unknown): { success: boolean; error?: unknown } }, value: unknown): string | undefined {
  const result = schema.safeParse(value);
  return result.success ? undefined : formatZodError(result.error as never, 'x');
}

describe('ImageName', () => {
  it.each(['a.jpg', 'IMG_0001.JPG', 'photo one.webp', 'ünïcode.png', 'a.b.bmp', 'x.jpeg', 'a..jpg', 'photo..1.png'])('accepts %j', (name) => {
    expect(problem(ImageName, name)).toBeUndefined();
  });

  it.each([
    ['', /is required/],
    ['../a.jpg', /not a path/],
    ['/etc/a.jpg', /not a path/],
    ['dir/a.jpg', /not a path/],
    ['dir\\a.jpg', /not a path/],
    ['..', /must not be "\." or "\.\."/],
    ['.', /must not be "\." or "\.\."/],
    ['a\u0000.jpg', /control character U\+0000 at position 1/],
    ['a\u009b.jpg', /control character U\+009B/],
    ['a\u2028.jpg', /U\+2028/],
    ['a.txt', /must name an image \(\.png \.jpg \.jpeg \.webp \.bmp\)/],
    ['a', /must name an image/],
    [`${'a'.repeat(252)}.png`, /256 characters long; names have at most 255/],
    [42, /expected string/],
  ])('refuses %j', (name, expected) => {
    expect(problem(ImageName, name)).toMatch(expected);
  });
});

describe('FolderName', () => {
  it.each(['10_dog', '1_sks dog', '5_shapes', '10_a..b'])('accepts %j', (name) => {
    expect(problem(FolderName, name)).toBeUndefined();
  });

  it.each([
    ['', /is required, e\.g\. "10_dog"/],
    ['dog', /must be a kohya training folder name, "<repeats>_<name>" such as "10_dog"/],
    ['0_dog', /kohya training folder name/],
    ['10_dog/cat', /not a path/],
    ['..', /must not be "\." or "\.\."/],
    ['10_\u0000', /control character U\+0000/],
  ])('refuses %j', (name, expected) => {
    expect(problem(FolderName, name)).toMatch(expected);
  });

  it('joins and splits names the way the manifest writes them', () => {
    expect(datasetNameOf({ image: 'a.jpg' })).toBe('a.jpg');
    expect(datasetNameOf({ folder: '10_dog', image: 'a.jpg' })).toBe('10_dog/a.jpg');
    expect(imageRefOf('a.jpg')).toEqual({ image: 'a.jpg' });
    expect(imageRefOf('10_dog/a.jpg')).toEqual({ folder: '10_dog', image: 'a.jpg' });
    // A deeper path splits once, leaving a path in `image` for the schema to refuse.
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [{ ...imageRefOf('10_dog/x/a.jpg'), caption: 'c' }] })).toMatch(/x\.edits\.0\.image: must be a file name, not a path/);
  });
});

describe('CaptionText', () => {
  it('trims, and accepts any one-line Unicode text up to the byte limit', () => {
    expect(CaptionText.parse('  sks dog, 🐕 running  ')).toBe('sks dog, 🐕 running');
    expect(CaptionText.parse('é'.repeat(MAX_CAPTION_BYTES / 2))).toHaveLength(MAX_CAPTION_BYTES / 2);
    // A leading byte-order mark or line break is trimmed like any whitespace: it never reaches the file.
    expect(CaptionText.parse('\ufeffsks dog\n')).toBe('sks dog');
  });

  it.each([
    ['', /must not be empty: sd-scripts aborts training/],
    [' \t ', /must not be empty/],
    ['é'.repeat(MAX_CAPTION_BYTES / 2 + 1), /is 1026 bytes of UTF-8; captions have at most 1024/],
    ['one\ntwo', /control character U\+000A at position 3: a caption is one line of plain text/],
    ['one\r\ntwo', /U\+000D/],
    ['tab\there', /U\+0009/],
    ['a\ufeffbom', /U\+FEFF at position 1/],
    ['del\u007f', /U\+007F/],
    ['a\ud800b', /lone UTF-16 surrogate at position 1/],
    ['a\udc00', /lone UTF-16 surrogate/],
  ])('refuses %j', (caption, expected) => {
    expect(problem(CaptionText, caption)).toMatch(expected);
  });
});

describe('utf8Length', () => {
  it.each(['', 'abc', 'é', '€', '🐕', 'mixed é€🐕 text', '\u07ff\u0800\uffff'])('matches Buffer.byteLength for %j', (text) => {
    expect(utf8Length(text)).toBe(Buffer.byteLength(text, 'utf8'));
  });
});

describe('EditCaptionsPayload', () => {
  const edit = { image: 'a.jpg', caption: 'sks dog' };

  it('accepts a reviewer and up to 100 edits of distinct images', () => {
    const edits = Array.from({ length: 100 }, (_, i) => ({ image: `${i}.png`, caption: 'x' }));
    expect(EditCaptionsPayload.parse({ reviewer: ' ada ', edits })).toMatchObject({ reviewer: 'ada', edits: { length: 100 } });
  });

  it('names every bad field', () => {
    const edits = Array.from({ length: 101 }, (_, i) => ({ image: `${i}.png`, caption: 'x' }));
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits })).toBe('x.edits: must hold at most 100 edits per request; send the rest in another');
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [] })).toBe('x.edits: must hold at least one { image, caption } edit');
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [edit, edit] })).toBe('x.edits.1.image: edits "a.jpg" a second time in the same request');
    const inFolder = { ...edit, folder: '10_dog' };
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [edit, inFolder] })).toBeUndefined();
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [inFolder, inFolder] })).toMatch(/edits "10_dog\/a\.jpg" a second time/);
    expect(problem(EditCaptionsPayload, { reviewer: '', edits: [{ image: '../a.jpg', caption: '' }] })).toBe(
      'x.reviewer: is required: who made the decision; x.edits.0.image: must be a file name, not a path: no "/" or "\\"; ' +
        'x.edits.0.caption: must not be empty: sd-scripts aborts training on an empty caption file',
    );
    expect(problem(EditCaptionsPayload, { reviewer: 'ada', edits: [{ ...edit, key: 'runs/x' }] })).toMatch(/x\.edits\.0: Unrecognized key: "key"/);
    expect(problem(EditCaptionsPayload, [edit])).toMatch(/^x: Invalid input: expected object/);
  });
});

describe('decision payloads', () => {
  it('approve takes an optional comment and force flag, reject needs a reason', () => {
    expect(ApprovePayload.parse({ reviewer: 'ada', force: true })).toEqual({ reviewer: 'ada', force: true });
    expect(problem(ApprovePayload, { reviewer: 'ada', force: 'yes' })).toMatch(/x\.force: Invalid input: expected boolean/);
    expect(problem(ApprovePayload, { reviewer: 'a\nb' })).toMatch(/x\.reviewer: contains the control character U\+000A/);
    expect(problem(RejectPayload, { reviewer: 'ada', reason: '  ' })).toBe('x.reason: is required: why the run is rejected');
  });
});

describe('review gate', () => {
  const open: ReviewGate = { phase: 'awaiting', decided: false, errors: 0, editsInFlight: 0 };

  it('takes edits and decisions only while the review is open and undecided', () => {
    expect(closedRefusal(open)).toBeUndefined();
    expect(closedRefusal({ ...open, phase: 'not_started' })).toMatch(/not awaiting review yet/);
    expect(closedRefusal({ ...open, decided: true })).toMatch(/a decision was already made/);
    expect(closedRefusal({ ...open, phase: 'decided' })).toMatch(/a decision was already made/);
    expect(closedRefusal({ ...open, phase: 'decided', notNeeded: true })).toBe('this run needed no review: its captions passed the checks, and it went on without one');
  });

  it('refuses approval while errors remain, unless forced, and while edits are being applied', () => {
    expect(approveRefusal(open, {})).toBeUndefined();
    expect(approveRefusal({ ...open, errors: 1 }, {})).toMatch(/^1 caption error remains: fix them/);
    expect(approveRefusal({ ...open, errors: 3 }, {})).toMatch(/^3 caption errors remain: /);
    expect(approveRefusal({ ...open, errors: 3 }, { force: true })).toBeUndefined();
    expect(approveRefusal({ ...open, editsInFlight: 1 }, { force: true })).toMatch(/edits are still being applied/);
    expect(approveRefusal({ ...open, phase: 'decided', errors: 1 }, { force: true })).toMatch(/already made/);
  });

  it('tallies edits and editors in first-edit order, and keeps the latest ignored signals', () => {
    const once = tallyEdits({ batches: 0, captions: 0, editors: [] }, 'bob', 3);
    expect(tallyEdits(tallyEdits(once, 'ada', 1), 'bob', 2)).toEqual({ batches: 3, captions: 6, editors: ['bob', 'ada'] });
    let kept = rememberIgnored([], { signal: 'approve', why: '0', at: 't' });
    for (let i = 1; i <= IGNORED_SIGNALS_KEPT; i++) kept = rememberIgnored(kept, { signal: 'reject', why: String(i), at: 't' });
    expect(kept.map((k) => k.why)).toEqual(['1', '2', '3', '4', '5']);
  });

  it('ends the run unless approved', () => {
    expect(stageAfterReview('approved')).toBeUndefined();
    expect(stageAfterReview('not_needed')).toBeUndefined();
    expect(stageAfterReview('rejected')).toBe('rejected');
    expect(stageAfterReview('timed_out')).toBe('review_timed_out');
  });
});

// ---- client side ---------------------------------------------------------------------------------

const issue = (severity: ReportIssue['severity'], file: string, rule = 'missing-caption'): ReportIssue => ({
  rule,
  severity,
  file,
  message: `${file} is wrong`,
  fix: `fix ${file}`,
});

describe('issues in pages', () => {
  const issues = [issue('error', 'a.jpg'), issue('error', 'b.txt', 'empty-caption'), issue('warning', 'c.txt', 'orphan-caption'), issue('info', 'b.jpg')];

  it('pages and filters by severity', () => {
    expect(pageOfIssues(issues, { page: 1, pageSize: 3 })).toMatchObject({ page: 1, pages: 2, total: 4, items: issues.slice(0, 3) });
    expect(pageOfIssues(issues, { page: 2, pageSize: 3 }).items).toEqual([issues[3]]);
    expect(pageOfIssues(issues, { page: 9, pageSize: 3 }).items).toEqual([]);
    expect(pageOfIssues(issues, { page: 1, pageSize: 10, severity: 'error' })).toMatchObject({ pages: 1, total: 2 });
    expect(pageOfIssues([], { page: 1, pageSize: 10 })).toMatchObject({ pages: 1, total: 0 });
  });

  it('ties an issue to an image by the image\'s name or its caption file', () => {
    expect(issuesOfImage(issues, 'b.jpg')).toEqual([issues[1], issues[3]]);
    expect(issuesOfImage(issues, 'c.png')).toEqual([issues[2]]);
    expect(issuesOfImage(issues, 'z.jpg')).toEqual([]);
  });

  it('renders the summary, one page and the next steps', () => {
    const state: ReviewState = {
      phase: 'awaiting',
      captions: { error: 2, warning: 1, info: 1, reportKey: 'runs/r/caption-report.json' },
      openedAt: '2026-01-01T00:00:00.000Z',
      deadline: '2026-01-08T00:00:00.000Z',
      editsInFlight: 0,
      edits: { batches: 1, captions: 2, editors: ['ada'] },
      ignoredSignals: [{ signal: 'approve', reviewer: 'eve', why: '2 caption errors remain', at: '2026-01-02T00:00:00.000Z' }],
    };
    const skipped = [
      ...['1', '2', '3', '4', '5'].map((n) => ({ source: `link${n}.txt`, reason: 'symbolic link leads outside the dataset: never opened' })),
      { source: 'bad\nname.png', reason: 'the name contains the control character U+000A at position 3: rename the file' },
    ];
    const imageWarnings = [{ image: 'wide.jpg', warnings: ['cropped: 44% of the picture is cut away (910×512 cropped to 512×512); try the bucket strategy'] }];
    const details: ReviewDetails = { workflowId: 'r', state, issues, skipped, imageWarnings, reportUri: 'file:///w/runs/r/caption-report.json' };
    const page: IssuePage = pageOfIssues(issues, { page: 1, pageSize: 2 });
    const next = [
      'edit:    lora review edit r --reviewer <name> --image <name.jpg> --caption <text>   (or --file edits.json)',
      'approve: lora review approve r --reviewer <name> [--comment <text>] [--force]',
      'reject:  lora review reject r --reviewer <name> --reason <text>',
      'page:    lora review serve r',
    ];
    const summary = [
      'run:      r',
      'review:   awaiting a decision since 2026-01-01T00:00:00.000Z, times out at 2026-01-08T00:00:00.000Z',
      'captions: 2 errors · 1 warning · 1 info',
      'skipped:  6 files left out by preprocessing',
      'edits:    2 captions rewritten in 1 edit by ada',
      'report:   file:///w/runs/r/caption-report.json',
      'ignored approve signal from eve at 2026-01-02T00:00:00.000Z: 2 caption errors remain',
    ];
    expect(reviewLines(details, { issues: page })).toEqual([
      ...summary,
      '',
      'issues 1-2 of 4 (page 1/2):',
      '  ERROR   missing-caption  a.jpg',
      '          a.jpg is wrong',
      '          fix: fix a.jpg',
      '  ERROR   empty-caption  b.txt',
      '          b.txt is wrong',
      '          fix: fix b.txt',
      '  more: lora review show r --page 2',
      '',
      'preprocessing warnings (1 image):',
      '  wide.jpg: cropped: 44% of the picture is cut away (910×512 cropped to 512×512); try the bucket strategy',
      '',
      'skipped files 1-5 of 6:',
      ...['1', '2', '3', '4', '5'].map((n) => `  link${n}.txt: symbolic link leads outside the dataset: never opened`),
      '  all: lora review show r --skipped',
      '',
      ...next,
    ]);
    // --skipped pages through the files left out instead; a name with a control character is quoted.
    expect(reviewLines(details, { skipped: pageOf(skipped, { page: 2, pageSize: 5 }) })).toEqual([
      ...summary,
      '',
      'skipped files 6-6 of 6 (page 2/2):',
      '  "bad\\nname.png": the name contains the control character U+000A at position 3: rename the file',
      '',
      ...next,
    ]);
  });
});

describe('lora review edit flags', () => {
  it('takes one edit from --image/--caption, naming the flag at fault', () => {
    expect(editPayloadOf({ reviewer: 'ada', image: 'a.jpg', caption: ' sks dog ' })).toEqual({ reviewer: 'ada', edits: [{ image: 'a.jpg', caption: 'sks dog' }] });
    expect(() => editPayloadOf({ reviewer: 'ada', image: 'a\\b.jpg', caption: 'x\ny' })).toThrow(
      '--image: must be a file name, not a path: no "/" or "\\"; --caption: contains the control character U+000A at position 1: a caption is one line of plain text',
    );
    expect(() => editPayloadOf({ reviewer: ' ', image: 'a.jpg', caption: 'x' })).toThrow('--reviewer: is required');
    expect(editPayloadOf({ reviewer: 'ada', image: '10_dog/a.jpg', caption: 'x' }).edits).toEqual([{ folder: '10_dog', image: 'a.jpg', caption: 'x' }]);
    expect(() => editPayloadOf({ reviewer: 'ada', image: '../a.jpg', caption: 'x' })).toThrow('--image (folder part): must not be "." or ".."');
    expect(() => editPayloadOf({ reviewer: 'ada', image: 'a.jpg' })).toThrow('--caption is required with --image');
    expect(() => editPayloadOf({ reviewer: 'ada' })).toThrow(/give either --image and --caption/);
  });

  it('takes many edits from a JSON file, naming the file and the entry at fault', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-edits-'));
    try {
      const good = path.join(dir, 'good.json');
      fs.writeFileSync(good, JSON.stringify([{ image: 'a.jpg', caption: 'one' }, { image: 'b.png', caption: 'two' }]));
      expect(editPayloadOf({ reviewer: 'ada', file: good }).edits).toHaveLength(2);
      const bad = path.join(dir, 'bad.json');
      fs.writeFileSync(bad, JSON.stringify([{ image: 'a.jpg', caption: 'one' }, { image: '../b.png', caption: 'two' }]));
      expect(() => editPayloadOf({ reviewer: 'ada', file: bad })).toThrow(`${bad}.1.image: must be a file name, not a path`);
      fs.writeFileSync(bad, '{ not json');
      expect(() => editPayloadOf({ reviewer: 'ada', file: bad })).toThrow(`${bad}: not valid JSON`);
      expect(() => editPayloadOf({ reviewer: 'ada', file: path.join(dir, 'missing.json') })).toThrow(/missing\.json: cannot read \(ENOENT\)/);
      expect(() => editPayloadOf({ reviewer: 'ada', file: good, image: 'a.jpg' })).toThrow(/give either/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
