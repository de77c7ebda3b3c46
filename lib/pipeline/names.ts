/** Names shared by the worker and every client. */
export const TASK_QUEUE = 'lora-training';
export const WORKFLOW_TYPE = 'loraTrainingWorkflow';

/** Default workflow id: readable in the Web UI, unique per start. */
export function defaultWorkflowId(runName: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `lora-${runName}-${stamp}`;
}

/**
 * Training polls run on their own queue next to the run's: they hold a slot for hours each, and
 * must never take the slots preprocessing needs.
 */
export function trainingPollQueue(taskQueue: string): string {
  return `${taskQueue}-training-polls`;
}
