/**
 * Workers add the project's search attributes a namespace lacks (so `docker compose up` on a fresh
 * cluster just works), leave existing ones alone, and step aside where the operator API is refused.
 */
import { msToTs } from '@temporalio/common/lib/time';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { temporal } from '@temporalio/proto';
import { ensureSearchAttributes, registerByHandMessage } from '../../worker/search-attributes';
import { startTemporal } from '../support/temporal';

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await startTemporal();
});

afterAll(async () => {
  await env?.teardown();
});

test('adds the three attributes to a namespace without them, once', async () => {
  const namespace = `fresh-${Date.now()}`;
  await env.connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
  const operator = env.nativeConnection.operatorService;
  expect(await ensureSearchAttributes(operator, namespace)).toEqual(['LoraStage', 'LoraBaseModel', 'LoraRunName']);
  const listed = await operator.listSearchAttributes({ namespace });
  expect(Object.keys(listed.customAttributes ?? {})).toEqual(expect.arrayContaining(['LoraStage', 'LoraBaseModel', 'LoraRunName']));
  expect(await ensureSearchAttributes(operator, namespace)).toEqual([]);
});

test('leaves a namespace that has them as it is', async () => {
  expect(await ensureSearchAttributes(env.nativeConnection.operatorService, 'default')).toEqual([]);
});

describe('where the operator API is refused or failing', () => {
  const refusing = (code: number) =>
    ({
      listSearchAttributes: () => Promise.reject(Object.assign(new Error('no'), { code })),
      addSearchAttributes: () => Promise.reject(new Error('must not be called')),
    }) as unknown as temporal.api.operatorservice.v1.OperatorService;

  it('steps aside on Temporal Cloud (permission denied, unauthenticated, unimplemented)', async () => {
    for (const code of [7, 12, 16]) await expect(ensureSearchAttributes(refusing(code), 'prod')).resolves.toBeUndefined();
  });

  it('passes other errors on, and the message says how to register them by hand', async () => {
    await expect(ensureSearchAttributes(refusing(14), 'prod')).rejects.toThrow('no');
    expect(registerByHandMessage('prod')).toBe(
      'register the search attributes LoraStage, LoraBaseModel, LoraRunName (Keyword) in namespace "prod" once, e.g. temporal operator search-attribute create --namespace prod --name LoraStage --type Keyword --name LoraBaseModel --type Keyword --name LoraRunName --type Keyword',
    );
  });
});
