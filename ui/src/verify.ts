// Check a signed compliance bundle in the browser, with nothing but WebCrypto: the manifest's Ed25519
// signature against the service's published key, and every file's SHA-256 against the manifest (nothing
// added, missing or changed). The full offline check (audit chain, path rules) is `catalog export verify`.

interface Entry {
  name: string;
  method: number;
  compressedSize: number;
  localOffset: number;
}

function entries(buf: ArrayBuffer): Entry[] {
  const v = new DataView(buf);
  let eocd = -1;
  for (let i = buf.byteLength - 22; i >= Math.max(0, buf.byteLength - 65557); i--) {
    if (v.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip file");
  const count = v.getUint16(eocd + 10, true);
  let p = v.getUint32(eocd + 16, true);
  const out: Entry[] = [];
  const dec = new TextDecoder();
  for (let k = 0; k < count; k++) {
    if (v.getUint32(p, true) !== 0x02014b50) throw new Error("bad zip central directory");
    const method = v.getUint16(p + 10, true);
    const compressedSize = v.getUint32(p + 20, true);
    const n = v.getUint16(p + 28, true);
    const m = v.getUint16(p + 30, true);
    const c = v.getUint16(p + 32, true);
    const localOffset = v.getUint32(p + 42, true);
    out.push({ name: dec.decode(new Uint8Array(buf, p + 46, n)), method, compressedSize, localOffset });
    p += 46 + n + m + c;
  }
  return out;
}

async function contents(buf: ArrayBuffer, e: Entry): Promise<Uint8Array<ArrayBuffer>> {
  const v = new DataView(buf);
  const n = v.getUint16(e.localOffset + 26, true);
  const m = v.getUint16(e.localOffset + 28, true);
  const data = new Uint8Array(buf, e.localOffset + 30 + n + m, e.compressedSize);
  if (e.method === 0) return data;
  if (e.method !== 8) throw new Error(`${e.name}: unsupported compression ${e.method}`);
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
const b64 = (s: string): Uint8Array<ArrayBuffer> => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

export interface Verification {
  keyId: string | null;
  signatureOk: boolean | null; // null: this browser has no Ed25519 in WebCrypto
  files: { name: string; ok: boolean; problem?: string }[];
  problems: string[];
  asOf?: string;
}

export async function verifyBundle(blob: Blob, keys: { keyId: string; publicKey: string }[]): Promise<Verification> {
  const buf = await blob.arrayBuffer();
  const list = entries(buf);
  const byName = new Map(list.map((e) => [e.name, e]));
  const problems: string[] = [];
  const manifestEntry = byName.get("manifest.json");
  const sigEntry = byName.get("manifest.sig");
  if (!manifestEntry || !sigEntry) return { keyId: null, signatureOk: false, files: [], problems: ["manifest.json or manifest.sig is missing"] };
  const manifestBytes = await contents(buf, manifestEntry);
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as { asOf?: string; files: Record<string, { sha256: string }> };
  const sig = JSON.parse(new TextDecoder().decode(await contents(buf, sigEntry))) as { keyId: string; signature: string };
  const key = keys.find((k) => k.keyId === sig.keyId);
  let signatureOk: boolean | null = false;
  if (!key) problems.push(`signed by ${sig.keyId}, which the service does not publish`);
  else {
    try {
      const pub = await crypto.subtle.importKey("raw", b64(key.publicKey), { name: "Ed25519" }, false, ["verify"]);
      signatureOk = await crypto.subtle.verify({ name: "Ed25519" }, pub, b64(sig.signature), manifestBytes);
      if (!signatureOk) problems.push("the manifest's signature does not verify");
    } catch {
      signatureOk = null;
    }
  }
  const files: Verification["files"] = [];
  for (const [name, meta] of Object.entries(manifest.files)) {
    const e = byName.get(name);
    if (!e) {
      files.push({ name, ok: false, problem: "missing" });
      continue;
    }
    const digest = hex(await crypto.subtle.digest("SHA-256", await contents(buf, e)));
    files.push(digest === meta.sha256 ? { name, ok: true } : { name, ok: false, problem: "SHA-256 differs" });
  }
  for (const e of list) if (!(e.name in manifest.files) && e.name !== "manifest.json" && e.name !== "manifest.sig") files.push({ name: e.name, ok: false, problem: "not in the manifest" });
  for (const f of files) if (!f.ok) problems.push(`${f.name}: ${f.problem}`);
  return { keyId: sig.keyId, signatureOk, files, problems, asOf: manifest.asOf };
}
