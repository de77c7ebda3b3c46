/** A real Temporal dev server (the CLI the setup installed) on a free loopback port, per test file. */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { installedTools } from '../../scripts/tools';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

export async function startTemporal(): Promise<TestWorkflowEnvironment> {
  // Workers log every state change at INFO; tests only want to hear about problems.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: installedTools().temporal },
      ip: '127.0.0.1',
      searchAttributes: SEARCH_ATTRIBUTES,
    },
  });
  // Printed so the test log shows these tests ran against a real server.
  console.log(`Temporal dev server (${installedTools().temporal}) at ${env.address}`);
  return env;
}
