/**
 * Where the project's own files are at run time. Scripts that run as separate processes (the local
 * trainer's supervisor, the dry-run trainer) always run from the compiled `dist/` tree, also when
 * the caller itself runs from TypeScript sources under ts-jest.
 */
import * as path from 'node:path';

/** The repository (or installed package) root: the folder holding package.json. */
export const PROJECT_ROOT = path.resolve(__dirname, __filename.endsWith('.ts') ? '..' : '../..');

/** Absolute path of a compiled script, e.g. `compiledScript('trainers/dry-run-kohya')`. */
export function compiledScript(relativeWithoutExtension: string): string {
  return path.join(PROJECT_ROOT, 'dist', `${relativeWithoutExtension}.js`);
}

/** The workflow code bundled by `npm run build`; compiled workers load it instead of bundling at start. */
export const WORKFLOW_BUNDLE = path.join(PROJECT_ROOT, 'dist', 'workflow-bundle.js');
