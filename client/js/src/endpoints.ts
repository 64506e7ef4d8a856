// Where each transport connects, and the certificate hash for WebTransport.

/** The URLs a client uses; an absent one is not tried. */
export interface Endpoints {
  webTransport?: string;
  webSocket?: string;
  /** Where certHash "auto" fetches the hash from. */
  certHash?: string;
}

/** One node a client may connect to: its endpoints, and the URL it was named by. */
export interface Target extends Endpoints {
  url: string;
}

/** The http(s) origin of a node's WebSocket URL (else of its WebTransport URL): where /api/nodes is. */
export function httpOrigin(t: Endpoints): string {
  const u = new URL((t.webSocket ?? t.webTransport)!);
  return `${u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:"}//${u.host}`;
}

/**
 * A node of /api/nodes from its URLs ({wt, wss, ws}): WebTransport at wt,
 * WebSocket at wss on an https page and ws on others (each falling back to
 * the other), the certificate hash on that WebSocket URL's origin.
 * Undefined when they cannot be used.
 */
export function nodeTarget(urls: { wt?: string; wss?: string; ws?: string } | undefined): Target | undefined {
  const wt = urls?.wt || undefined;
  const ws = (base()?.startsWith("https:") ? urls?.wss || urls?.ws : urls?.ws || urls?.wss) || undefined;
  const url = wt ?? ws ?? "none:"; // no URL: a scheme resolveEndpoints refuses
  try {
    return { url, ...resolveEndpoints(url, { webTransportUrl: wt, webSocketUrl: ws }) };
  } catch {
    return undefined; // no URL, or not one this client can use
  }
}

export interface EndpointOptions {
  webSocketUrl?: string;
  webTransportUrl?: string;
  certHashUrl?: string;
}

function base(): string | undefined {
  const loc = (globalThis as { location?: { href?: string } }).location;
  return typeof loc?.href === "string" ? loc.href : undefined;
}

function parse(raw: string, what: string): URL {
  try {
    return new URL(raw, base());
  } catch {
    throw new TypeError(`switchyard: ${what} ${JSON.stringify(raw)} is not a valid URL`);
  }
}

/**
 * Resolves the URL given to connect() and the options into endpoints:
 *
 * - https://h:p[/path] → WebTransport at that URL (path /wt when it has
 *   none), WebSocket at wss://h:p/ws;
 * - http://h:p → WebSocket at ws://h:p/ws only (WebTransport needs https);
 * - ws:// or wss:// → WebSocket at exactly that URL.
 *
 * webSocketUrl and webTransportUrl override the derived URLs; relative
 * URLs resolve against the page. The certificate hash is fetched from
 * /certhash on the HTTP origin of the WebSocket URL (ws → http, wss →
 * https) unless certHashUrl says otherwise.
 */
export function resolveEndpoints(url: string, o: EndpointOptions = {}): Endpoints {
  const u = parse(url, "URL");
  const ep: Endpoints = {};
  switch (u.protocol) {
    case "https:": {
      const wt = new URL(u.href);
      if (wt.pathname === "" || wt.pathname === "/") wt.pathname = "/wt";
      ep.webTransport = wt.href;
      ep.webSocket = `wss://${u.host}/ws`;
      break;
    }
    case "http:":
      ep.webSocket = `ws://${u.host}/ws`;
      break;
    case "ws:":
    case "wss:":
      ep.webSocket = u.href;
      break;
    default:
      throw new TypeError(`switchyard: URL ${JSON.stringify(url)}: scheme must be https, http, wss or ws`);
  }
  if (o.webTransportUrl !== undefined) {
    const wt = parse(o.webTransportUrl, "webTransportUrl");
    if (wt.protocol !== "https:") {
      throw new TypeError(`switchyard: webTransportUrl ${JSON.stringify(o.webTransportUrl)} must be https://`);
    }
    ep.webTransport = wt.href;
  }
  if (o.webSocketUrl !== undefined) {
    const ws = parse(o.webSocketUrl, "webSocketUrl");
    // A relative URL resolved against an http(s) page: switch the scheme.
    if (ws.protocol === "http:") ws.protocol = "ws:";
    else if (ws.protocol === "https:") ws.protocol = "wss:";
    if (ws.protocol !== "ws:" && ws.protocol !== "wss:") {
      throw new TypeError(`switchyard: webSocketUrl ${JSON.stringify(o.webSocketUrl)} must be ws:// or wss://`);
    }
    ep.webSocket = ws.href;
  }
  if (o.certHashUrl !== undefined) {
    ep.certHash = parse(o.certHashUrl, "certHashUrl").href;
  } else if (ep.webSocket !== undefined) {
    const ws = new URL(ep.webSocket);
    ep.certHash = `${ws.protocol === "wss:" ? "https:" : "http:"}//${ws.host}/certhash`;
  }
  return ep;
}

/**
 * Decodes a SHA-256 certificate hash given as base64 (standard or URL-safe,
 * padded or not). Throws TypeError unless it is 32 bytes.
 */
export function decodeCertHash(s: string): Uint8Array<ArrayBuffer> {
  let t = s.trim().replace(/-/g, "+").replace(/_/g, "/");
  while (t.length % 4 !== 0) t += "=";
  let bin: string;
  try {
    bin = atob(t);
  } catch {
    throw new TypeError("switchyard: certHash is not base64");
  }
  if (bin.length !== 32) {
    throw new TypeError(`switchyard: certHash has ${bin.length} bytes, want a 32-byte SHA-256`);
  }
  const b = new Uint8Array(32);
  for (let i = 0; i < 32; i++) b[i] = bin.charCodeAt(i);
  return b;
}

/**
 * Fetches the server's current certificate hash from GET /certhash:
 * {"algorithm": "sha-256", "value": "<std base64>", "notAfter": "..."}.
 */
export async function fetchCertHash(url: string, signal?: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
  const rsp = await fetch(url, { cache: "no-store", credentials: "omit", signal });
  if (!rsp.ok) throw new Error(`GET ${url}: HTTP ${rsp.status}`);
  const body = (await rsp.json()) as { algorithm?: unknown; value?: unknown };
  if (body.algorithm !== "sha-256" || typeof body.value !== "string") {
    throw new Error(`GET ${url}: not a sha-256 certificate hash`);
  }
  return decodeCertHash(body.value);
}
