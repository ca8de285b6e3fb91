const encoder = new TextEncoder();

/**
 * Compares two secrets in time that depends on neither: both are hashed to 32 bytes first,
 * so even their lengths do not leak, then compared with the runtime's timing-safe equality.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([digest(given), digest(expected)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

async function digest(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(value));
}
