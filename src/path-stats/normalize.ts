/** Request normalization: methods, and paths reduced to route templates. Pure. */

/** The methods statistics accept (RFC 9110 plus PATCH); anything else is invalid input. */
export const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"] as const;
export type Method = (typeof METHODS)[number];

/** Longest raw path accepted (longer is rejected as junk). */
export const MAX_RAW_PATH = 2_048;
/** Templates keep at most this many segments; the rest become one `*`. */
export const MAX_SEGMENTS = 16;
/** A segment longer than this is almost always a token or an id, so it becomes `:id`. */
export const MAX_SEGMENT = 64;
/** The template every path beyond the template cap is counted under. */
export const OTHER_TEMPLATE = "(other)";

const NUMERIC = /^\d+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{16,}$/i;

/** Upper-cases a method; `null` when it is not one statistics accept. */
export function normalizeMethod(method: string): Method | null {
  const upper = method.toUpperCase();
  return (METHODS as readonly string[]).includes(upper) ? (upper as Method) : null;
}

/** A configured route pattern: literal segments, `:name` for one segment, a final `*` for the rest. */
export interface RoutePattern {
  template: string;
  segments: string[];
}

/** Parses route patterns; throws on a malformed one (a configuration error). */
export function compileRoutes(patterns: readonly string[]): RoutePattern[] {
  return patterns.map((pattern) => {
    if (!pattern.startsWith("/")) throw new Error(`route pattern "${pattern}" must start with "/"`);
    const segments = pattern.split("/").filter((segment) => segment !== "");
    segments.forEach((segment, i) => {
      if (segment === "*" && i !== segments.length - 1) throw new Error(`"*" may only end route pattern "${pattern}"`);
      if (segment === ":") throw new Error(`route pattern "${pattern}" has an unnamed parameter`);
    });
    return { template: `/${segments.join("/")}`, segments };
  });
}

function matches(route: RoutePattern, segments: readonly string[]): boolean {
  for (let i = 0; i < route.segments.length; i += 1) {
    const want = route.segments[i]!;
    if (want === "*") return segments.length >= i;
    const got = segments[i];
    if (got === undefined) return false;
    if (!want.startsWith(":") && want !== got) return false;
  }
  return segments.length === route.segments.length;
}

/**
 * The template a raw path is counted under, or `null` when it is not a path (empty, not
 * starting with `/`, too long). The query string and fragment are dropped, empty segments
 * (`//`, a trailing `/`) collapse, the first matching route pattern wins; otherwise numeric,
 * UUID and long-hex (16+) segments, and segments over 64 characters, become `:id`, and
 * segments past the 16th are replaced by a single `*`.
 */
export function normalizePath(raw: string, routes: readonly RoutePattern[] = []): string | null {
  if (raw.length === 0 || raw.length > MAX_RAW_PATH || !raw.startsWith("/")) return null;
  const end = raw.search(/[?#]/);
  const pathname = end === -1 ? raw : raw.slice(0, end);
  const segments = pathname.split("/").filter((segment) => segment !== "");
  for (const route of routes) if (matches(route, segments)) return route.template;
  const templated = segments
    .slice(0, MAX_SEGMENTS)
    .map((segment) =>
      NUMERIC.test(segment) || UUID.test(segment) || LONG_HEX.test(segment) || segment.length > MAX_SEGMENT ? ":id" : segment,
    );
  if (segments.length > MAX_SEGMENTS) templated.push("*");
  return `/${templated.join("/")}`;
}
