// The suite spawns one app server per test (`node` from PATH: run.sh puts Node 22 first);
// one file, one worker, so the servers never compete for the machine's two cores.
export default {
  test: {
    include: ['*.test.mjs'],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
};
