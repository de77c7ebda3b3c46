/**
 * scripts/with-allocator.sh, which starts every worker (npm run worker, the image, benchmarks, fault
 * tests): jemalloc where the system has it (.ci/run installs it), glibc's malloc when asked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../../adapters/project-paths';

const SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'with-allocator.sh');
const jemallocInstalled = readdirSync('/usr/lib').some((dir) => dir.endsWith('-linux-gnu') && existsSync(path.join('/usr/lib', dir, 'libjemalloc.so.2')));

/** What a node process started through the script reports: its allocator and malloc settings. */
function startedThroughScript(env: Record<string, string> = {}): { allocator: string; mallocConf?: string; arenaMax?: string } {
  const probe = `
    const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
    console.log(JSON.stringify({ allocator: /libjemalloc/.test(maps) ? 'jemalloc' : 'glibc', mallocConf: process.env.MALLOC_CONF, arenaMax: process.env.MALLOC_ARENA_MAX }));`;
  const { LD_PRELOAD: _preload, MALLOC_CONF: _conf, ...inherited } = process.env;
  return JSON.parse(execFileSync('/bin/sh', [SCRIPT, process.execPath, '-e', probe], { env: { ...inherited, ...env }, encoding: 'utf8' }));
}

(jemallocInstalled ? test : test.skip)('preloads jemalloc with background purging when it is installed', () => {
  expect(startedThroughScript()).toEqual({
    allocator: 'jemalloc',
    mallocConf: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2',
    arenaMax: '2',
  });
  // Settings of the user's own win.
  expect(startedThroughScript({ MALLOC_CONF: 'narenas:4' }).mallocConf).toBe('narenas:4');
});

test('LORA_ALLOCATOR=glibc keeps glibc malloc with capped arenas', () => {
  expect(startedThroughScript({ LORA_ALLOCATOR: 'glibc' })).toEqual({ allocator: 'glibc', arenaMax: '2' });
});
