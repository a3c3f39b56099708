export { type ComputeWorldOptions, detectSpecVersion, SUPPORTED_SPEC_VERSIONS } from './config.js';
export { signDelivery, verifyDelivery } from './signature.js';
export { type QueueHandler, type QueueMeta } from './queue-handler.js';
export { type ComputeWorld, createWorld } from './world.js';

import { createWorld } from './world.js';

/** `WORKFLOW_TARGET_WORLD=world-compute` loaders call the default export or `createWorld`. */
export default createWorld;
