/**
 * What the caption rules are configured with, and where each setting comes from: the token limit
 * from the kohya options (the one place `max_token_length` is decided), the trigger word and banned
 * terms from the run input. Pure, so the workflow derives the options it passes to the activity.
 */
import { z } from 'zod';
import { kohyaOptionsFor } from '../kohya/config';
import { BannedTerms, type TrainingRun } from '../pipeline/input';

/** One CLIP window holds 75 caption tokens (77 with the start and end tokens). */
export const CLIP_WINDOW_TOKENS = 75;

export const CaptionRuleOptions = z
  .object({
    /**
     * sd-scripts' `max_token_length`: absent means one window of 75 tokens; 150 and 225 are the only
     * other values it accepts. Taken as is from the kohya options and checked here.
     */
    maxTokenLength: z
      .unknown()
      .pipe(z.union([z.literal(150), z.literal(225)], 'must be 150 or 225 (what sd-scripts accepts), or absent for 75').optional())
      .optional(),
    triggerWord: z.string().trim().min(1).optional(),
    bannedTerms: BannedTerms.default([]),
  })
  .strict();
export type CaptionRuleOptionsInput = z.input<typeof CaptionRuleOptions>;
export type CaptionRuleOptions = z.output<typeof CaptionRuleOptions>;

/** The most caption tokens sd-scripts passes to the text encoder; the rest is cut. */
export function tokenLimitOf(options: Pick<CaptionRuleOptions, 'maxTokenLength'>): number {
  return options.maxTokenLength ?? CLIP_WINDOW_TOKENS;
}

/** The rule options of a run: what the workflow passes to every caption check. */
export function captionRulesFor(run: TrainingRun): CaptionRuleOptionsInput {
  return {
    maxTokenLength: kohyaOptionsFor(run).max_token_length,
    triggerWord: run.triggerWord,
    bannedTerms: run.captions.bannedTerms,
  };
}
