/**
 * A tiny varint codec for sketch serialization. Sketches are stored as SQLite BLOBs, so
 * small non-negative integers (counts, index deltas) take one or two bytes instead of eight.
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export class ByteWriter {
  #bytes: number[] = [];

  /** An unsigned safe integer, 7 bits per byte, least significant group first. */
  uint(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not an unsigned safe integer: ${value}`);
    let rest = value;
    while (rest >= 0x80) {
      this.#bytes.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.#bytes.push(rest);
    return this;
  }

  /** A signed safe integer, zigzag-encoded so small negatives stay small. */
  int(value: number): this {
    return this.uint(value < 0 ? -2 * value - 1 : 2 * value);
  }

  byte(value: number): this {
    this.#bytes.push(value & 0xff);
    return this;
  }

  bytes(values: Uint8Array): this {
    for (const value of values) this.#bytes.push(value);
    return this;
  }

  /** A length-prefixed byte string. */
  chunk(values: Uint8Array): this {
    return this.uint(values.length).bytes(values);
  }

  /** A length-prefixed UTF-8 string. */
  text(value: string): this {
    return this.chunk(encoder.encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

export class ByteReader {
  #offset = 0;

  constructor(private readonly data: Uint8Array) {}

  uint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = this.byte();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) throw new RangeError("varint too long");
    }
    if (!Number.isSafeInteger(value)) throw new RangeError("varint exceeds a safe integer");
    return value;
  }

  int(): number {
    const raw = this.uint();
    return raw % 2 === 0 ? raw / 2 : -(raw + 1) / 2;
  }

  byte(): number {
    const value = this.data[this.#offset];
    if (value === undefined) throw new RangeError("unexpected end of sketch data");
    this.#offset += 1;
    return value;
  }

  chunk(): Uint8Array {
    return this.bytes(this.uint());
  }

  /** Skips a length-prefixed byte string without copying it. */
  skipChunk(): void {
    const length = this.uint();
    if (this.#offset + length > this.data.length) throw new RangeError("unexpected end of sketch data");
    this.#offset += length;
  }

  text(): string {
    return decoder.decode(this.chunk());
  }

  bytes(length: number): Uint8Array {
    if (this.#offset + length > this.data.length) throw new RangeError("unexpected end of sketch data");
    const out = this.data.slice(this.#offset, this.#offset + length);
    this.#offset += length;
    return out;
  }

  get done(): boolean {
    return this.#offset >= this.data.length;
  }
}

/** SQLite hands BLOBs back as ArrayBuffer; RPC may hand Uint8Array. Accept both. */
export function asBytes(value: ArrayBuffer | Uint8Array): Uint8Array {
  return value instanceof Uint8Array ? value : new Uint8Array(value);
}
