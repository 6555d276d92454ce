// Every call goes through the service's own API with the key the user signed in with (kept in
// sessionStorage: this tab only). Errors become ApiError carrying the problem+json detail, so a page
// can say *why* something is hidden (403: the rule that denied it) instead of just failing.

const KEY_STORAGE = "catalog.apiKey";

export function getKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}
export function setKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public code?: string,
  ) {
    super(message);
  }
  get forbidden(): boolean {
    return this.status === 403 || this.code === "FORBIDDEN";
  }
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const key = getKey();
  return { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

async function problem(res: Response): Promise<ApiError> {
  let detail = res.statusText;
  try {
    const body = await res.json();
    detail = body.detail ?? body.title ?? detail;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, detail);
}

export async function rest<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, {
    ...init,
    headers: headers({ Accept: "application/json", ...(init?.body ? { "Content-Type": "application/json" } : {}) }),
  });
  if (!res.ok) throw await problem(res);
  return (await res.json()) as T;
}

export async function download(path: string): Promise<{ blob: Blob; filename: string }> {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) throw await problem(res);
  const cd = res.headers.get("Content-Disposition") ?? "";
  const m = /filename="?([^";]+)"?/.exec(cd);
  return { blob: await res.blob(), filename: m?.[1] ?? "export.zip" };
}

export interface GqlError {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string };
}

/** A GraphQL query: the data, plus errors (partial results are normal: another product's internals are
 * null with a FORBIDDEN error, and the page shows why). */
export async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<{ data: T; errors: GqlError[] }> {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify({ query, variables }),
  });
  if (!res.ok && res.status !== 200) {
    if (res.headers.get("Content-Type")?.includes("json")) {
      const body = await res.json().catch(() => null);
      if (body?.errors?.length) throw new ApiError(res.status, body.errors[0].message, body.errors[0].extensions?.code);
      if (body?.detail) throw new ApiError(res.status, body.detail);
    }
    throw new ApiError(res.status, res.statusText);
  }
  const body = await res.json();
  const errors: GqlError[] = body.errors ?? [];
  if (!body.data) {
    const e = errors[0];
    throw new ApiError(e?.extensions?.code === "FORBIDDEN" ? 403 : 400, e?.message ?? "no data", e?.extensions?.code);
  }
  return { data: body.data as T, errors };
}

/** The message of a FORBIDDEN error at `path` (e.g. ["dataset", "fields"]), if any. */
export function forbiddenAt(errors: GqlError[], ...path: (string | number)[]): string | null {
  const hit = errors.find(
    (e) => e.extensions?.code === "FORBIDDEN" && path.every((p, i) => e.path?.[i] === p),
  );
  return hit ? hit.message : null;
}

export const enc = encodeURIComponent;

export function splitNodeId(id: string): { kind: "dataset" | "job"; namespace: string; name: string } {
  // `dataset:{namespace}:{name}`: namespaces contain ':' (postgres://h:5432) but names of datasets do not
  // usually; the name is after the last ':' unless the namespace is a URI with a port.
  const kind = id.startsWith("job:") ? "job" : "dataset";
  const rest = id.slice(kind.length + 1);
  const i = rest.lastIndexOf(":");
  return { kind, namespace: rest.slice(0, i), name: rest.slice(i + 1) };
}

export function fmtTime(s?: string | null): string {
  if (!s) return "—";
  const d = new Date(s);
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function fmtDuration(a?: string | null, b?: string | null): string {
  if (!a || !b) return "—";
  const ms = new Date(b).getTime() - new Date(a).getTime();
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${(m / 60).toFixed(1)} h`;
}
