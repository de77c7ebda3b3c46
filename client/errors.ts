/**
 * Every failure the CLI reports is one line: known Temporal errors are told in the run's terms,
 * anything else by its first line (never a stack trace).
 */
import {
  isGrpcDeadlineError,
  isGrpcServiceError,
  NamespaceNotFoundError,
  QueryNotRegisteredError,
  ServiceError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import { WORKFLOW_TYPE } from '../lib/pipeline/names';

const GRPC_UNAVAILABLE = 14;

/** Ctrl-C while following: the run goes on, only the watching stops. */
export class FollowInterrupted extends Error {
  readonly exitCode = 130;

  constructor(workflowId: string) {
    super(`stopped following ${workflowId}; the run goes on (lora status ${workflowId} --follow)`);
  }
}

export function describeError(err: unknown): string {
  if (err instanceof WorkflowNotFoundError) return `no run with id ${err.workflowId} (lora list shows the runs)`;
  if (err instanceof WorkflowExecutionAlreadyStartedError) {
    return `a run with id ${err.workflowId} already exists; choose another --id`;
  }
  if (err instanceof NamespaceNotFoundError) {
    return `namespace "${err.namespace}" does not exist on this Temporal server (check TEMPORAL_NAMESPACE)`;
  }
  if (err instanceof QueryNotRegisteredError) return `the run does not answer the status query (is it a ${WORKFLOW_TYPE}?)`;
  if (isGrpcDeadlineError(err)) return 'Temporal did not answer in time';
  if (isUnavailable(err)) return 'lost the connection to Temporal (is "npm run stack" running?)';
  const message = err instanceof Error ? err.message : String(err);
  // The SDK's ServiceError says what failed ("Failed to query Workflow"); its gRPC cause says why.
  const cause = err instanceof ServiceError && isGrpcServiceError(err.cause) ? `: ${err.cause.details}` : '';
  return `${message}${cause}`.split('\n')[0] || 'unknown error';
}

export function exitCodeOf(err: unknown): number {
  return err instanceof FollowInterrupted ? err.exitCode : 1;
}

function isUnavailable(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return [err, cause].some((e) => isGrpcServiceError(e) && e.code === GRPC_UNAVAILABLE);
}
