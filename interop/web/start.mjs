// Starts @workflow/web on WORKFLOW_WEB_PORT (0: any free port) and prints its URL once listening.
// WORKFLOW_TARGET_WORLD and the WORKFLOW_COMPUTE_* variables come from start.sh.
import { startServer } from '@workflow/web/server';

const server = await startServer(Number(process.env.WORKFLOW_WEB_PORT ?? 0));
console.log(`workflow-web listening on http://127.0.0.1:${server.address().port}`);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
