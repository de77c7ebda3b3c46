/** Search attributes the Web UI and `temporal workflow list` filter on; registered by the stack and the tests. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const LORA_STAGE = defineSearchAttributeKey('LoraStage', SearchAttributeType.KEYWORD);
export const LORA_BASE_MODEL = defineSearchAttributeKey('LoraBaseModel', SearchAttributeType.KEYWORD);
export const LORA_RUN_NAME = defineSearchAttributeKey('LoraRunName', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [LORA_STAGE, LORA_BASE_MODEL, LORA_RUN_NAME];
