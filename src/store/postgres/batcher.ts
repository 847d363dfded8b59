/**
 * Coalesces calls that arrive while earlier ones are on the wire into one statement (one round
 * trip) each. An idle store sends a call at once, so a lone command pays no extra latency; under
 * load, concurrent commands share round trips, which is what bounds PostgreSQL throughput here
 * (each statement costs ~0.13 ms of fleetgate CPU plus ~0.15 ms of PostgreSQL CPU,
 * docs/performance.md).
 */
export class Batcher<I, O> {
  private readonly queue: Array<{ item: I; resolve: (o: O) => void; reject: (e: unknown) => void }> = [];
  private inFlight = 0;

  constructor(
    /** Runs a batch; must return one result per item, in order. */
    private readonly runBatch: (items: I[]) => Promise<O[]>,
    /** Runs one item alone: for a batch of one, and for each item when a batch fails. */
    private readonly runOne: (item: I) => Promise<O>,
    /**
     * Batches of one kind on the wire at once. 2 measured best (npm run bench, production): 1
     * gives the biggest batches but queues a lone command behind the one before it (p50 at 800/s
     * 2.3-3.7 ms with 2, 7-20 ms with 1); 4 splits load into small batches (maximum at 128
     * concurrent requests 2,086/s with 4, 2,489-2,575/s with 2).
     */
    private readonly maxInFlight = 2,
    private readonly maxBatch = 256,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async send(batch: Array<{ item: I; resolve: (o: O) => void; reject: (e: unknown) => void }>): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch as [(typeof batch)[number]];
      await this.runOne(only.item).then(only.resolve, only.reject);
      return;
    }
    let results: O[];
    try {
      results = await this.runBatch(batch.map((b) => b.item));
    } catch {
      // One bad item (e.g. a vehicle deleted meanwhile) must not fail the others: each alone.
      await Promise.all(batch.map((b) => this.runOne(b.item).then(b.resolve, b.reject)));
      return;
    }
    for (const [i, b] of batch.entries()) b.resolve(results[i]!);
  }
}
