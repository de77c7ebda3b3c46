/** Names shared by the worker and every client. */
export const TASK_QUEUE = 'lora-training';
export const WORKFLOW_TYPE = 'loraTrainingWorkflow';

/** Default workflow id: readable in the Web UI, unique per start. */
export function defaultWorkflowId(runName: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `lora-${runName}-${stamp}`;
}
