import { describe, expect, it } from "vitest";
import { SseParser, utf8Length } from "../../rpc/llm-sse";

const encoder = new TextEncoder();

/** All events of `text` fed in the given pieces, plus what end() reports. */
function parse(pieces: string[]) {
  const parser = new SseParser();
  const events = pieces.flatMap((piece) => parser.push(encoder.encode(piece)));
  const rest = parser.end();
  return { events: [...events, ...rest.events], unterminated: rest.unterminated };
}

describe("SseParser", () => {
  it("parses LF, CRLF and lone CR line ends alike, and a CR at a chunk's end followed by LF in the next", () => {
    const expected = [
      { event: "message", data: "a" },
      { event: "message", data: "b" },
      { event: "message", data: "c" },
    ];
    expect(parse(["data: a\n\ndata: b\r\n\r\ndata: c\r\r"]).events).toEqual(expected);
    expect(parse(["data: a\r", "\n\r", "\ndata: b\r\n", "\r\ndata: c\r", "\r"]).events).toEqual(expected);
  });

  it("joins multi-line data with \\n, names events, skips comments and events without data, strips one leading space", () => {
    const text = ": keep-alive\n\nevent: ping\n\nevent: delta\ndata:  two spaces\ndata:none\ndata\nid: 7\nretry: 10\n\n";
    expect(parse([text]).events).toEqual([{ event: "delta", data: " two spaces\nnone\n" }]);
  });

  it("drops a byte-order mark at the start only, and decodes characters split across chunks", () => {
    const bytes = encoder.encode("\uFEFFdata: é🎉\n\n");
    const parser = new SseParser();
    const events = [...bytes].flatMap((byte) => parser.push(new Uint8Array([byte])));
    expect(events).toEqual([{ event: "message", data: "é🎉" }]);
  });

  it("reports the event the stream left open at its end, and nothing when it ended between events", () => {
    expect(parse(['data: {"a":1}\n\ndata: {"b"', ":2}"])).toEqual({
      events: [{ event: "message", data: '{"a":1}' }],
      unterminated: { event: "message", data: '{"b":2}' },
    });
    expect(parse(["data: x\n\n"]).unterminated).toBeUndefined();
  });

  it("counts UTF-8 bytes without encoding, lone surrogates as the 3 bytes of U+FFFD", () => {
    for (const text of ["", "abc", "é", "世界", "🎉", "a\u{10FFFF}b", "\uD800", "x\uDC00y", "\uD83D"]) {
      expect(utf8Length(text), JSON.stringify(text)).toBe(encoder.encode(text).byteLength);
    }
  });
});
