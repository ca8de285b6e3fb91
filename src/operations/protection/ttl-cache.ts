/**
 * One value loaded at most once per `ttlMs` (per isolate or per object), so a hot path asks
 * the protection object only when its copy is older than that. Concurrent callers share one
 * load. When a reload fails, the last value is kept and used (the failure is logged by the
 * caller through `onError`); with no value yet, the failure propagates.
 */
export class TtlCache<T> {
  #value: { value: T; loadedAt: number } | undefined;
  #loading: Promise<T> | undefined;

  constructor(
    private readonly ttlMs: number,
    private readonly load: () => Promise<T>,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** The cached value when younger than the TTL at `nowMs`, else a fresh one. */
  async get(nowMs: number): Promise<T> {
    const cached = this.#value;
    if (cached !== undefined && nowMs - cached.loadedAt < this.ttlMs && nowMs >= cached.loadedAt) return cached.value;
    if (this.#loading === undefined) {
      this.#loading = this.load()
        .then((value) => {
          this.#value = { value, loadedAt: nowMs };
          return value;
        })
        .finally(() => {
          this.#loading = undefined;
        });
    }
    try {
      return await this.#loading;
    } catch (error) {
      if (cached === undefined) throw error;
      this.onError(error);
      return cached.value;
    }
  }

  /** Forgets the value: the next `get` loads. */
  clear(): void {
    this.#value = undefined;
  }
}

/** How long a copy of the lists and policy is trusted: `PROTECTION_CACHE_MS`, default 5 s. */
export const DEFAULT_PROTECTION_CACHE_MS = 5_000;

export function protectionCacheMs(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === "") return DEFAULT_PROTECTION_CACHE_MS;
  const value = Number(raw);
  return Number.isSafeInteger(value) && value >= 0 && value <= 300_000 ? value : DEFAULT_PROTECTION_CACHE_MS;
}
