/** Every activity the worker registers, built from injected stores and trainers. */
import type { ActivityDeps } from './deps';
import { makeCaptionActivities } from './captions';
import { makePreprocessActivities } from './preprocess';
import { makeRegisterActivities } from './register';
import { makeReviewActivities } from './review';
import { makeTrainingActivities } from './training';
import { makeUploadActivities } from './upload';

export function createActivities(deps: ActivityDeps) {
  return {
    ...makePreprocessActivities(deps),
    ...makeCaptionActivities(deps),
    ...makeReviewActivities(deps),
    ...makeUploadActivities(deps),
    ...makeTrainingActivities(deps),
    ...makeRegisterActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps';
