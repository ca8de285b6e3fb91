/**
 * The one piece of `node:async_hooks` tollgate uses (enabled by the `nodejs_als` compatibility
 * flag in wrangler.toml). Declared here because the Worker build does not load Node's types.
 */
declare module "node:async_hooks" {
  export class AsyncLocalStorage<T> {
    getStore(): T | undefined;
    run<R>(store: T, callback: () => R): R;
  }
}
