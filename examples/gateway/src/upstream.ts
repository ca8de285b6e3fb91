/**
 * The API behind the gateway. In a real deployment this is another service; here it is a
 * function so the example runs on its own.
 */
export function upstream(request: Request): Response {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/":
    case "/hello":
      return Response.json({ message: "hello from the upstream API", path: url.pathname });
    case "/time":
      return Response.json({ now: new Date().toISOString() });
    default:
      if (url.pathname.startsWith("/users/")) {
        return Response.json({ user: { id: url.pathname.slice("/users/".length) } });
      }
      return Response.json({ error: { code: "NOT_FOUND", message: "no such resource" } }, { status: 404 });
  }
}
