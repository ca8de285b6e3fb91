import { formatIp, type ParsedIp, parseIp } from "../../path-stats/ip";

/** An address range: the first `prefix` bits of `bytes` (the rest are zero). */
export interface Cidr {
  version: 4 | 6;
  bytes: Uint8Array;
  prefix: number;
}

/**
 * Parses `a.b.c.d/n`, `x:y::/n`, or a bare address (a range of one: /32 or /128). Returns
 * `null` for anything else, including a prefix out of range and host bits set after the
 * prefix (`203.0.113.5/24`): on an allow or deny list a typo must be refused, not guessed at.
 */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(address);
  if (ip === null) return null;
  // An IPv4-mapped IPv6 range cannot be told apart from its IPv4 form once parsed: refuse it.
  if (ip.version === 4 && address.includes(":")) return null;
  const bits = ip.bytes.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(digits)) return null;
    prefix = Number(digits);
    if (prefix > bits) return null;
  }
  for (let bit = prefix; bit < bits; bit += 1) {
    if ((ip.bytes[bit >> 3]! & (0x80 >> (bit & 7))) !== 0) return null;
  }
  return { version: ip.version, bytes: ip.bytes, prefix };
}

/** The canonical text of a range: the address in canonical form, always with its prefix. */
export function formatCidr(cidr: Cidr): string {
  return `${formatIp({ version: cidr.version, bytes: cidr.bytes } as ParsedIp)}/${cidr.prefix}`;
}

/** Whether `ip` lies in `cidr` (an IPv4 address never lies in an IPv6 range, and the reverse). */
export function cidrContains(cidr: Cidr, ip: ParsedIp): boolean {
  if (cidr.version !== ip.version) return false;
  const whole = cidr.prefix >> 3;
  for (let i = 0; i < whole; i += 1) if (cidr.bytes[i] !== ip.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (cidr.bytes[whole]! & mask) === (ip.bytes[whole]! & mask);
}

/** A list of ranges, parsed once, asked many times. Lists are short (bounded), so a scan is enough. */
export class CidrSet {
  readonly #ranges: Cidr[];

  constructor(ranges: readonly string[]) {
    this.#ranges = ranges.map((text) => {
      const cidr = parseCidr(text);
      if (cidr === null) throw new Error(`not a CIDR range: ${text}`);
      return cidr;
    });
  }

  get size(): number {
    return this.#ranges.length;
  }

  /** Whether the address `ipText` lies in any range; `false` for a string that is not an address. */
  has(ipText: string): boolean {
    const ip = parseIp(ipText);
    return ip !== null && this.#ranges.some((cidr) => cidrContains(cidr, ip));
  }
}
