/**
 * An incremental parser of server-sent events (the WHATWG "event stream" format), for reading
 * LLM streams as they pass through a gateway. Bytes go in as they arrive, in chunks split
 * anywhere (inside a line, a CRLF pair or a UTF-8 sequence); complete events come out. No
 * platform imports: it runs in Workers, Node and browsers.
 */

export interface SseEvent {
  /** The `event:` field, `"message"` when the event named none. */
  event: string;
  /** The `data:` lines, joined with `\n`. */
  data: string;
}

const LINE_END = /\r\n|\r|\n/g;

export class SseParser {
  readonly #decoder = new TextDecoder();
  /** The text of the current line so far (its end has not arrived). */
  #line = "";
  /** The last chunk ended with CR: a LF starting the next one belongs to it. */
  #afterCr = false;
  #started = false;
  #data: string[] = [];
  #event = "";

  /** Parses a chunk and returns the events it completed, in order. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.#feed(this.#decoder.decode(chunk, { stream: true }));
  }

  /**
   * The end of the stream: the events the last bytes completed, and the event that was still
   * open (data lines without the blank line that dispatches them). The format discards such an
   * event; a meter may still read it, since its bytes did reach the client.
   */
  end(): { events: SseEvent[]; unterminated?: SseEvent } {
    const events = this.#feed(this.#decoder.decode());
    if (this.#line !== "") this.#field(this.#line);
    this.#line = "";
    const unterminated = this.#data.length > 0 ? { event: this.#event || "message", data: this.#data.join("\n") } : undefined;
    this.#data = [];
    this.#event = "";
    return unterminated === undefined ? { events } : { events, unterminated };
  }

  #feed(text: string): SseEvent[] {
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return [];
    let from = 0;
    if (this.#afterCr && text.charCodeAt(0) === 0x0a) from = 1;
    this.#afterCr = false;
    const events: SseEvent[] = [];
    LINE_END.lastIndex = from;
    for (let match = LINE_END.exec(text); match !== null; match = LINE_END.exec(text)) {
      const line = this.#line + text.slice(from, match.index);
      this.#line = "";
      from = LINE_END.lastIndex;
      if (match[0] === "\r" && from === text.length) this.#afterCr = true;
      const event = this.#lineEnded(line);
      if (event !== undefined) events.push(event);
    }
    this.#line += text.slice(from);
    return events;
  }

  #lineEnded(line: string): SseEvent | undefined {
    if (line !== "") {
      this.#field(line);
      return undefined;
    }
    // A blank line dispatches the event; one without data lines is dropped, as the format says.
    if (this.#data.length === 0) {
      this.#event = "";
      return undefined;
    }
    const event = { event: this.#event || "message", data: this.#data.join("\n") };
    this.#data = [];
    this.#event = "";
    return event;
  }

  #field(line: string): void {
    if (line.charCodeAt(0) === 0x3a) return; // ":" starts a comment (keep-alives)
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (name === "data") this.#data.push(value);
    else if (name === "event") this.#event = value;
    // `id` and `retry` do not matter to a meter.
  }
}

/** The length of `text` in UTF-8 bytes, without encoding it. A lone surrogate counts as U+FFFD (3 bytes). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
