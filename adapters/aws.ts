/**
 * AWS clients for the worker. Region and an optional S3-compatible endpoint (moto, MinIO) come
 * from the environment; credentials are left to the SDK's default chain (env, profile, IMDS, IRSA).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { z } from 'zod';
import { parseOrThrow } from '../lib/pipeline/input';

export { classifyAwsError } from '../lib/aws-errors';
export type { AwsErrorClass } from '../lib/aws-errors';

// An empty variable (e.g. `AWS_ENDPOINT_URL=` in a compose file) means "not set".
const unsetIfEmpty = (value: unknown) => (value === '' ? undefined : value);

export const AwsConfig = z
  .object({
    AWS_REGION: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, { error: (issue) => `must be an AWS region such as us-east-1, got "${String(issue.input)}"` })
        .default('us-east-1'),
    ),
    AWS_ENDPOINT_URL: z.preprocess(
      unsetIfEmpty,
      z
        .url({
          protocol: /^https?$/,
          error: (issue) => `must be an http(s) URL such as http://127.0.0.1:5000, got "${String(issue.input)}"`,
        })
        .optional(),
    ),
  })
  .transform((env) => ({ region: env.AWS_REGION, endpoint: env.AWS_ENDPOINT_URL }));
export type AwsConfig = z.output<typeof AwsConfig>;

/** Reads AWS_REGION and AWS_ENDPOINT_URL; throws an Error naming the bad variable. */
export function awsConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AwsConfig {
  return parseOrThrow(AwsConfig, { AWS_REGION: env.AWS_REGION, AWS_ENDPOINT_URL: env.AWS_ENDPOINT_URL }, 'env');
}

/**
 * The SDK warns on every start that releases after January 2027 need Node 22. We pin SDK versions
 * and support Node 20 (package.json engines), so that notice is for maintainers, not for each run.
 */
function silenceFutureNodeNotice(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/** Both clients the worker needs, from one validated configuration. */
export function awsClients(cfg: AwsConfig): { s3: S3Client; sagemaker: SageMakerClient } {
  return { s3: s3Client(cfg), sagemaker: sageMakerClient(cfg) };
}

export function s3Client(cfg: AwsConfig): S3Client {
  silenceFutureNodeNotice();
  // S3-compatible servers rarely resolve virtual-hosted bucket names (bucket.localhost), so a
  // custom endpoint always means path-style addressing.
  return new S3Client({ region: cfg.region, endpoint: cfg.endpoint, forcePathStyle: cfg.endpoint !== undefined });
}

export function sageMakerClient(cfg: AwsConfig): SageMakerClient {
  silenceFutureNodeNotice();
  return new SageMakerClient({ region: cfg.region, endpoint: cfg.endpoint });
}
