// @workflow/world-testing's end-to-end suite (12 tests) against world-compute, i.e.
// against the compute-worker named by WORKFLOW_COMPUTE_URL / WORKFLOW_COMPUTE_API_KEY.
import { fileURLToPath } from 'node:url';
import { createTestSuite } from '@workflow/world-testing';

const world =
  process.env.WT_WORLD ?? fileURLToPath(new URL('../world-compute/dist/index.js', import.meta.url));

createTestSuite(world);
