// Compile-time only (npm run typecheck): the World answers both interface lines.
import type { World as World4 } from '@workflow/world';
import type { World as World5 } from '@workflow/world-v5';
import { createWorld } from '../src/index.js';
import defaultExport from '../src/index.js';

const four: World4 = createWorld({ specVersion: 3 });
const five: World5 = createWorld({ specVersion: 5 });
const viaDefault: World4 & World5 = defaultExport();

export const checks = [four, five, viaDefault];
