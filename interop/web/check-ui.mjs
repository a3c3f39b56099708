// Opens @workflow/web in headless Chromium (Debian's `chromium`) and checks that the
// page lists a given run id, i.e. that the UI reads the worker's runs through
// world-compute. Usage: node check-ui.mjs WEB_URL RUN_ID [SCREENSHOT.png]
// Env: CHROMIUM (default: chromium). Exit 0 when the run id is on the page.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, runId, screenshot] = process.argv.slice(2);
if (!url || !runId) {
  console.error('usage: check-ui.mjs WEB_URL RUN_ID [SCREENSHOT.png]');
  process.exit(2);
}
const chromium = process.env.CHROMIUM ?? 'chromium';
const profile = mkdtempSync(join(tmpdir(), 'wdk-web-check-'));
const flags = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  `--user-data-dir=${profile}`,
  '--window-size=1400,900',
  // Let the client render and fetch the runs before the DOM is taken.
  '--virtual-time-budget=20000',
];
try {
  const dom = spawnSync(chromium, [...flags, '--dump-dom', url], { encoding: 'utf8', timeout: 90_000 });
  if (dom.error) throw dom.error;
  if (screenshot) {
    spawnSync(chromium, [...flags, `--screenshot=${screenshot}`, url], { timeout: 90_000 });
  }
  const found = (dom.stdout ?? '').includes(runId);
  console.log(found ? `found ${runId} on ${url}` : `run ${runId} not on ${url} (${(dom.stdout ?? '').length} bytes of DOM)`);
  process.exit(found ? 0 : 1);
} finally {
  rmSync(profile, { recursive: true, force: true });
}
