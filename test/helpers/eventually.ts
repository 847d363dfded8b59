/**
 * Polls until `check` holds, for conditions that live in another process or server (a fleetgate
 * child process, a restarted broker or database) where no in-process event can be awaited. The
 * interval is short and the wait bounded; in-process conditions use Harness.waitFor instead.
 */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
