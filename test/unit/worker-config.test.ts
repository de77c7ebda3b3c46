/** The worker's environment: defaults, and a bad variable named with its reason. */
import { workerEnv } from '../../worker/config';
import { capacityOf } from '../../worker/create';

describe('workerEnv', () => {
  it('serves every queue with bounded stage activities by default', () => {
    const config = workerEnv({});
    expect(config.LORA_WORKER_QUEUES).toBe('all');
    expect(capacityOf(config)).toEqual({ maxActivities: 8, maxTrainingPolls: 1000, maxCachedWorkflows: 20 });
  });

  it('reads a polls-only process and numbers given as text', () => {
    const config = workerEnv({ LORA_WORKER_QUEUES: 'training-polls', LORA_MAX_TRAINING_POLLS: '5000' });
    expect(config.LORA_WORKER_QUEUES).toBe('training-polls');
    expect(config.LORA_MAX_TRAINING_POLLS).toBe(5000);
  });

  it.each([
    [{ LORA_WORKER_QUEUES: 'polls' }, /env\.LORA_WORKER_QUEUES: .*"all".*"stages".*"training-polls"/],
    [{ LORA_MAX_ACTIVITIES: '0' }, /env\.LORA_MAX_ACTIVITIES: /],
    [{ LORA_METRICS_ADDRESS: 'http://x:9464' }, /env\.LORA_METRICS_ADDRESS: must be host:port/],
    [{ LORA_WORK_STORE: '/data/work' }, /env\.LORA_WORK_STORE: must be a file:\/\/ or s3:\/\/ URI/],
  ])('names the variable in %j', (env, message) => {
    expect(() => workerEnv(env)).toThrow(message);
  });
});
