import { awsConfigFromEnv, s3Client, sageMakerClient } from '../../adapters/aws';

describe('awsConfigFromEnv', () => {
  it('defaults the region and leaves the endpoint unset', () => {
    expect(awsConfigFromEnv({})).toEqual({ region: 'us-east-1', endpoint: undefined });
    expect(awsConfigFromEnv({ AWS_REGION: '', AWS_ENDPOINT_URL: '' })).toEqual({ region: 'us-east-1', endpoint: undefined });
  });

  it('reads AWS_REGION and AWS_ENDPOINT_URL', () => {
    expect(awsConfigFromEnv({ AWS_REGION: 'eu-central-1', AWS_ENDPOINT_URL: 'http://127.0.0.1:5000' })).toEqual({
      region: 'eu-central-1',
      endpoint: 'http://127.0.0.1:5000',
    });
  });

  it('names the bad variable and the value it got', () => {
    expect(() => awsConfigFromEnv({ AWS_REGION: 'Frankfurt' })).toThrow('env.AWS_REGION: must be an AWS region such as us-east-1, got "Frankfurt"');
    expect(() => awsConfigFromEnv({ AWS_ENDPOINT_URL: 'localhost:5000' })).toThrow('env.AWS_ENDPOINT_URL: must be an http(s) URL');
  });
});

describe('client factories', () => {
  it('use path-style S3 addressing only with a custom endpoint', async () => {
    const custom = s3Client({ region: 'us-east-1', endpoint: 'http://127.0.0.1:5000' });
    const aws = s3Client({ region: 'eu-west-1', endpoint: undefined });
    expect(custom.config.forcePathStyle).toBe(true);
    expect(aws.config.forcePathStyle).toBe(false);
    expect(await aws.config.region()).toBe('eu-west-1');
  });

  it('point SageMaker at the custom endpoint', async () => {
    const client = sageMakerClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:5000' });
    const endpoint = await client.config.endpoint?.();
    expect(endpoint?.hostname).toBe('127.0.0.1');
    expect(endpoint?.port).toBe(5000);
  });
});
