import { FormEvent, useEffect, useRef, useState } from "react";
import { Link, NavLink, Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { ApiError, getKey, rest, setKey } from "./api";
import { SearchPage } from "./pages/SearchPage";
import { DatasetPage } from "./pages/DatasetPage";
import { JobPage } from "./pages/JobPage";
import { LineagePage } from "./pages/LineagePage";
import { PiiFlowPage } from "./pages/PiiFlowPage";
import { ProductMapPage } from "./pages/ProductMapPage";
import { FindingsPage } from "./pages/FindingsPage";
import { ExportPage } from "./pages/ExportPage";
import { GrantsPage } from "./pages/GrantsPage";
import { Me, MeContext } from "./session";

export function App() {
  const [key, setKeyState] = useState<string | null>(getKey());
  const [me, setMe] = useState<Me | null>(null);
  useEffect(() => {
    setMe(null);
    if (!key) return;
    let live = true;
    // Unreadable (an older service, a network error): null, and pages leave the judging to the API.
    rest<Me>("/api/v1/me")
      .then((m) => live && setMe(m))
      .catch(() => live && setMe(null));
    return () => {
      live = false;
    };
  }, [key]);
  if (!key) return <SignIn onSignedIn={(k) => setKeyState(k)} />;
  const signOut = () => {
    setKey(null);
    setKeyState(null);
  };
  return (
    <MeContext.Provider value={me}>
    <div className="shell">
      <TopBar keyId={keyIdOf(key)} me={me} onSignOut={signOut} />
      <main className="main" id="main">
        <Routes>
          <Route path="/" element={<Navigate to="/search" replace />} />
          <Route path="/search" element={<SearchPage />} />
          <Route path="/datasets/:namespace/:name" element={<DatasetPage />} />
          <Route path="/jobs/:namespace/:name" element={<JobPage />} />
          <Route path="/lineage" element={<LineagePage />} />
          <Route path="/pii-flow" element={<PiiFlowPage />} />
          <Route path="/products" element={<ProductMapPage />} />
          <Route path="/findings" element={<FindingsPage />} />
          <Route path="/grants" element={<GrantsPage />} />
          <Route path="/export" element={<ExportPage />} />
          <Route path="*" element={<p className="empty">No such page. <Link to="/search">Search the catalog</Link>.</p>} />
        </Routes>
      </main>
    </div>
    </MeContext.Provider>
  );
}

function keyIdOf(key: string): string {
  const m = /^cat_([0-9a-f]+)_/.exec(key);
  return m ? `key ${m[1]}` : "bootstrap key";
}

function TopBar({ keyId, me, onSignOut }: { keyId: string; me: Me | null; onSignOut: () => void }) {
  const navigate = useNavigate();
  const location = useLocation();
  const [q, setQ] = useState(new URLSearchParams(location.search).get("q") ?? "");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) {
        e.preventDefault();
        input.current?.focus();
        input.current?.select();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const params = new URLSearchParams(location.pathname === "/search" ? location.search : "");
    params.set("q", q);
    navigate(`/search?${params}`);
  };
  return (
    <header className="topbar">
      <Link to="/search" className="brand" aria-label="Catalog home">
        <svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true">
          <circle cx="5" cy="12" r="3" fill="#60a5fa" />
          <circle cx="19" cy="5" r="3" fill="#34d399" />
          <circle cx="19" cy="19" r="3" fill="#f472b6" />
          <path d="M8 12 L16 6 M8 12 L16 18" stroke="#cbd5e1" strokeWidth="1.6" fill="none" />
        </svg>
        <span>Catalog</span>
      </Link>
      <nav className="nav" aria-label="Main">
        <NavLink to="/search">Search</NavLink>
        <NavLink to="/lineage">Lineage</NavLink>
        <NavLink to="/products">Product map</NavLink>
        <NavLink to="/findings">Findings</NavLink>
        <NavLink to="/grants">Grants</NavLink>
        <NavLink to="/export">Export</NavLink>
      </nav>
      <form className="topsearch" role="search" onSubmit={submit}>
        <input
          ref={input}
          type="search"
          aria-label="Search datasets, jobs and fields"
          placeholder="Search datasets, jobs, fields…"
          value={q}
          onChange={(e) => setQ(e.target.value)}
        />
        <kbd aria-hidden="true">/</kbd>
      </form>
      <div className="who">
        <span title="Signed in for this tab only">{me ? me.keyName : keyId}</span>
        {me && (
          <span className="role" aria-label="Role and product">
            {me.role}
            {me.product ? ` · ${me.product}` : ""}
          </span>
        )}
        <a href="/docs">API</a>
        <button className="link" onClick={onSignOut}>
          Sign out
        </button>
      </div>
    </header>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (key: string) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const key = value.trim();
    if (!key) return;
    setBusy(true);
    setError(null);
    setKey(key);
    try {
      await rest("/api/v1/search?q=a&limit=1");
      onSignedIn(key);
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        onSignedIn(key); // a valid key that may not search (e.g. a pipeline's): pages say what it may not do
      } else {
        setKey(null);
        setError(err instanceof ApiError && err.status === 401 ? `The service refused this key: ${err.message}` : String(err));
      }
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} className="signin-card">
        <h1>Lineage &amp; governance catalog</h1>
        <p>Sign in with an API key. It is kept in this tab only (session storage) and sent to this service's API on every call; you see exactly what the API lets that key see.</p>
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" placeholder="cat_…" value={value} onChange={(e) => setValue(e.target.value)} autoFocus />
        {error && (
          <p className="notice notice-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p className="hint">
          Keys are made with <code>catalog keys create --role engineer --product payments</code>.
        </p>
      </form>
    </main>
  );
}
