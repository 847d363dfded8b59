/**
 * aedes's message emitter (mqemitter) without its concurrency limit. With the limit (aedes's
 * default: 100 messages in flight), further messages queue, and as each delivery finishes the
 * next queued message starts inside that completion's call: thousands queued (a reconnect storm's
 * wills, statuses and reports) recurse past the stack's end, and the broker thread dies with
 * "Maximum call stack size exceeded" (seen in `npm run bench -- --scale`; mqemitter's own fix,
 * pull request 204, is open). Without the limit every message starts at once; aedes handles each
 * client's packets one at a time, so what is in flight stays bounded by the connections.
 */
export const AEDES_MESSAGE_QUEUE = { concurrency: 0 } as const;
