import { describe, expect, it } from "vitest";
import { parseIp } from "../../../src/path-stats/ip";
import { CidrSet, cidrContains, formatCidr, parseCidr } from "../../../src/operations/protection/cidr";

const contains = (range: string, ip: string) => cidrContains(parseCidr(range)!, parseIp(ip)!);
const canonical = (range: string) => {
  const cidr = parseCidr(range);
  return cidr === null ? null : formatCidr(cidr);
};

describe("CIDR parsing", () => {
  it("accepts IPv4 and IPv6 ranges and bare addresses, and prints them canonically", () => {
    expect(canonical("203.0.113.0/24")).toBe("203.0.113.0/24");
    expect(canonical("192.0.2.7")).toBe("192.0.2.7/32");
    expect(canonical("2001:DB8::/32")).toBe("2001:db8::/32");
    expect(canonical("2001:db8:0:0:0:0:0:1")).toBe("2001:db8::1/128");
    expect(canonical("0.0.0.0/0")).toBe("0.0.0.0/0");
    expect(canonical("::/0")).toBe("::/0");
    expect(canonical("10.0.0.0/8")).toBe("10.0.0.0/8");
    expect(canonical("10.128.0.0/9")).toBe("10.128.0.0/9");
  });

  it("refuses malformed ranges: bad addresses, prefixes out of range or misspelled, host bits set, mapped IPv6", () => {
    for (const bad of [
      "",
      "/",
      "203.0.113.0/",
      "203.0.113.0/33",
      "2001:db8::/129",
      "203.0.113.0/-1",
      "203.0.113.0/024",
      "203.0.113.0/2 4",
      "203.0.113.5/24",
      "2001:db8::1/64",
      "256.0.0.0/8",
      "203.0.113/24",
      "2001:db8::g/32",
      "203.0.113.0/24/8",
      "::ffff:203.0.113.0/120",
      "1.2.3.4/0x10",
      " 1.2.3.4/32",
      "1.2.3.4/32 ",
      "01.2.3.4/32",
    ]) {
      expect(parseCidr(bad), bad).toBeNull();
    }
  });
});

describe("CIDR matching", () => {
  it("matches the addresses inside an IPv4 range and no others, at every prefix edge", () => {
    expect(contains("203.0.113.0/24", "203.0.113.0")).toBe(true);
    expect(contains("203.0.113.0/24", "203.0.113.255")).toBe(true);
    expect(contains("203.0.113.0/24", "203.0.114.0")).toBe(false);
    expect(contains("203.0.113.0/24", "203.0.112.255")).toBe(false);
    expect(contains("10.128.0.0/9", "10.255.1.1")).toBe(true);
    expect(contains("10.128.0.0/9", "10.127.255.255")).toBe(false);
    expect(contains("192.0.2.7/32", "192.0.2.7")).toBe(true);
    expect(contains("192.0.2.7/32", "192.0.2.6")).toBe(false);
    expect(contains("0.0.0.0/0", "255.255.255.255")).toBe(true);
    expect(contains("0.0.0.0/0", "0.0.0.0")).toBe(true);
  });

  it("matches IPv6 ranges (/0, /32, /47, /128) and never crosses address families", () => {
    expect(contains("2001:db8::/32", "2001:db8:ffff::1")).toBe(true);
    expect(contains("2001:db8::/32", "2001:db9::1")).toBe(false);
    expect(contains("2001:db8::/47", "2001:db8:1:ffff::1")).toBe(true);
    expect(contains("2001:db8::/47", "2001:db8:2::1")).toBe(false);
    expect(contains("2001:db8::1/128", "2001:db8::1")).toBe(true);
    expect(contains("2001:db8::1/128", "2001:db8::2")).toBe(false);
    expect(contains("::/0", "ffff::1")).toBe(true);
    expect(contains("::/0", "203.0.113.1")).toBe(false);
    expect(contains("0.0.0.0/0", "2001:db8::1")).toBe(false);
    // An IPv4-mapped address is the IPv4 address it maps.
    expect(contains("203.0.113.0/24", "::ffff:203.0.113.9")).toBe(true);
  });

  it("a set answers for any of its ranges, and refuses a malformed one when built", () => {
    const set = new CidrSet(["203.0.113.0/24", "2001:db8::/32"]);
    expect(set.has("203.0.113.50")).toBe(true);
    expect(set.has("2001:db8::50")).toBe(true);
    expect(set.has("198.51.100.1")).toBe(false);
    expect(set.has("not an ip")).toBe(false);
    expect(new CidrSet([]).has("203.0.113.50")).toBe(false);
    expect(() => new CidrSet(["203.0.113.1/24"])).toThrow(/not a CIDR range/);
  });
});
