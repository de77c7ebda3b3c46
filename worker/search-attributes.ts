/**
 * The search attributes every run sets (workflows/search-attributes.ts) must exist in the namespace,
 * or each run's first workflow task fails. A worker adds those missing where the server lets it (a
 * self-hosted cluster, the dev server); Temporal Cloud refuses the operator API, and there they are
 * registered once by hand.
 */
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

type OperatorService = temporal.api.operatorservice.v1.OperatorService;

/** gRPC codes of a server that does not let this caller use the operator API. */
const NOT_ALLOWED = new Set([7 /* PERMISSION_DENIED */, 12 /* UNIMPLEMENTED */, 16 /* UNAUTHENTICATED */]);

/** The names added (empty when all were there), or undefined when the server does not let us look. */
export async function ensureSearchAttributes(operator: OperatorService, namespace: string): Promise<string[] | undefined> {
  let existing: temporal.api.operatorservice.v1.IListSearchAttributesResponse;
  try {
    existing = await operator.listSearchAttributes({ namespace });
  } catch (err) {
    if (NOT_ALLOWED.has((err as { code?: number }).code ?? -1)) return undefined;
    throw err;
  }
  const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (existing.customAttributes ?? {})));
  if (missing.length > 0) {
    await operator.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])) });
  }
  return missing.map((key) => key.name);
}

/** What to tell an operator whose namespace lacks the attributes and refused to take them. */
export function registerByHandMessage(namespace: string): string {
  const names = SEARCH_ATTRIBUTES.map((key) => key.name);
  return `register the search attributes ${names.join(', ')} (Keyword) in namespace "${namespace}" once, e.g. temporal operator search-attribute create --namespace ${namespace} ${names.map((name) => `--name ${name} --type Keyword`).join(' ')}`;
}
