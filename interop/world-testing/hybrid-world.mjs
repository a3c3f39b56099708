// A check of world-compute's queue half with the 5.0 runtime: storage, streams and
// keys from @workflow/world-local, queue / getDeploymentId / createQueueHandler from
// world-compute talking to reference/delivery-shim.mjs (WORKFLOW_COMPUTE_URL). Run by
// queue-check.sh; shows that the delivery contract of LANE.md §3-4 is all the 5.0
// runtime needs from a queue, independent of the worker's storage.
import { createLocalWorld } from '@workflow/world-local';
import { createWorld as createComputeWorld } from '../world-compute/dist/index.js';

export function createWorld() {
  const local = createLocalWorld({ dataDir: process.env.WORKFLOW_LOCAL_DATA_DIR });
  const compute = createComputeWorld({ specVersion: 5 });
  return {
    ...local,
    specVersion: 5,
    queue: compute.queue,
    createQueueHandler: compute.createQueueHandler,
    getDeploymentId: compute.getDeploymentId,
    // world-local's start() re-enqueues active runs through its own queue: not here.
    start: undefined,
    async close() {
      await compute.close();
      await local.close?.();
    },
  };
}

export default createWorld;
