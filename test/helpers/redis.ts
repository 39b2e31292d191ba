// The local Redis the async-job tests use (a database of their own).
export const REDIS_URL = process.env.RELAYQ_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
