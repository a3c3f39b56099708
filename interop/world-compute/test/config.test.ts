import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { detectSpecVersion, resolveConfig } from '../src/config.js';
import { createWorld } from '../src/index.js';

const dirs: string[] = [];
function appWith(packages: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'wc-spec-'));
  dirs.push(dir);
  for (const [name, version] of Object.entries(packages)) {
    const pkgDir = join(dir, 'node_modules', ...name.split('/'));
    mkdirSync(pkgDir, { recursive: true });
    writeFileSync(join(pkgDir, 'package.json'), JSON.stringify({ name, version, main: 'index.js' }));
    writeFileSync(join(pkgDir, 'index.js'), '');
  }
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  delete process.env.WORKFLOW_COMPUTE_SPEC_VERSION;
});

describe('spec version', () => {
  it('detects the 5.0 line from @workflow/core, the 4.x line otherwise', () => {
    expect(detectSpecVersion(appWith({ '@workflow/core': '5.0.0-beta.35' }))).toBe(5);
    expect(detectSpecVersion(appWith({ '@workflow/core': '4.8.9' }))).toBe(3);
    expect(detectSpecVersion(appWith({ workflow: '5.0.0-beta.35' }))).toBe(5);
    expect(detectSpecVersion(appWith({ '@workflow/world': '4.5.0' }))).toBe(3);
    expect(detectSpecVersion(appWith({}))).toBe(3);
  });

  it('the option wins over the env, the env over detection', () => {
    process.env.WORKFLOW_COMPUTE_SPEC_VERSION = '5';
    expect(resolveConfig().specVersion).toBe(5);
    expect(resolveConfig({ specVersion: 3 }).specVersion).toBe(3);
    expect(createWorld().specVersion).toBe(5);
  });

  it('refuses spec versions it does not speak', () => {
    process.env.WORKFLOW_COMPUTE_SPEC_VERSION = '7';
    expect(() => resolveConfig()).toThrow(/WORKFLOW_COMPUTE_SPEC_VERSION must be one of 3, 4, 5/);
    process.env.WORKFLOW_COMPUTE_SPEC_VERSION = 'five';
    expect(() => resolveConfig()).toThrow(/must be an integer/);
    expect(() => resolveConfig({ specVersion: 2 })).toThrow(/options.specVersion/);
  });
});

describe('configuration', () => {
  it('reads the environment', () => {
    const saved = { ...process.env };
    try {
      process.env.WORKFLOW_COMPUTE_URL = 'http://127.0.0.1:8080/';
      process.env.WORKFLOW_COMPUTE_API_KEY = 'k';
      process.env.WORKFLOW_COMPUTE_DEPLOYMENT_ID = 'dpl_1';
      process.env.WORKFLOW_COMPUTE_APP_URL = 'http://app:3000/';
      process.env.WORKFLOW_COMPUTE_DELIVERY_SECRET = 's';
      process.env.WORKFLOW_COMPUTE_MAX_RETRIES = '2';
      const config = resolveConfig({ specVersion: 3 });
      expect(config).toMatchObject({
        url: 'http://127.0.0.1:8080',
        apiKey: 'k',
        deploymentId: 'dpl_1',
        deliverySecret: 's',
        maxRetries: 2,
      });
      expect(config.appUrl()).toBe('http://app:3000');
    } finally {
      process.env = saved;
    }
  });

  it('refuses a URL that is not http(s)', () => {
    expect(() => resolveConfig({ url: 'ftp://x', specVersion: 3 })).toThrow(/must be http/);
    expect(() => resolveConfig({ url: 'not a url', specVersion: 3 })).toThrow(/is not a URL/);
  });
});
