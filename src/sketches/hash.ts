/** Deterministic, non-cryptographic string hashes (MurmurHash3 x86_32 over UTF-8). */

const encoder = new TextEncoder();

export function murmur3(text: string, seed = 0): number {
  return murmur3Bytes(encoder.encode(text), seed);
}

export function murmur3Bytes(data: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const blocks = data.length - (data.length % 4);
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = data.length % 4;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= data[blocks + 2]! << 16;
    if (tail >= 2) k ^= data[blocks + 1]! << 8;
    k ^= data[blocks]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 53-bit hash (a safe integer) built from two independently seeded 32-bit hashes. */
export function hash53(text: string): number {
  const data = encoder.encode(text);
  const high = murmur3Bytes(data, 0x2f693a5b);
  const low = murmur3Bytes(data, 0x9747b28c);
  return high * 2 ** 21 + (low >>> 11);
}
