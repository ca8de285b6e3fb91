/**
 * The API behind the gateway. In a real deployment this is another service; here it is a
 * function so the example runs on its own. Paid routes (`/v1/…`) say what a request really
 * cost in `X-Usage-Units`, the way a metered API reports usage; the gateway settles that.
 */
export async function upstream(request: Request): Promise<Response> {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/":
    case "/hello":
      return Response.json({ message: "hello from the upstream API", path: url.pathname });
    case "/time":
      return Response.json({ now: new Date().toISOString() });
    case "/v1/echo":
      return Response.json({ echo: url.searchParams.get("msg") ?? "" }, { headers: { "X-Usage-Units": "1" } });
    case "/v1/completions": {
      if (request.method !== "POST")
        return Response.json({ error: { code: "METHOD_NOT_ALLOWED", message: "POST a prompt" } }, { status: 405 });
      const prompt = await request.text();
      // One unit per started 100 characters of prompt: a stand-in for token metering.
      const units = Math.max(1, Math.ceil(prompt.length / 100));
      return Response.json({ completion: prompt.split("").reverse().join(""), units }, { headers: { "X-Usage-Units": String(units) } });
    }
    default:
      if (url.pathname.startsWith("/users/")) {
        return Response.json({ user: { id: url.pathname.slice("/users/".length) } });
      }
      return Response.json({ error: { code: "NOT_FOUND", message: "no such resource" } }, { status: 404 });
  }
}
