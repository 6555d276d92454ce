import { describe, expect, it } from "vitest";
import { diffFields } from "./pages/DatasetPage";
import { productFlows } from "./pages/ProductMapPage";
import { mayStewardAny, mayStewardProduct } from "./session";

describe("diffFields", () => {
  it("names added, removed and retyped fields", () => {
    const d = diffFields(
      [{ name: "id", type: "INT" }, { name: "cpf", type: "TEXT" }],
      [{ name: "id", type: "BIGINT" }, { name: "email", type: "TEXT" }],
    );
    expect(d).toEqual({ added: ["email"], removed: ["cpf"], changed: ["id: INT → BIGINT"] });
  });
});

describe("productFlows", () => {
  it("counts flows between products, with PII and unencrypted ones, and none inside a product", () => {
    const datasets = [
      { namespace: "pg", name: "payments.customers", product: "payments", hasPii: true, producers: [{ namespace: "af", name: "payments.load", product: "payments" }], consumers: [{ namespace: "af", name: "fraud.score", product: "fraud" }] },
      { namespace: "ftp", name: "ledger.out", product: null, hasPii: false, producers: [{ namespace: "af", name: "ledger.push", product: "ledger" }], consumers: [] },
    ];
    const { boxes, flows } = productFlows(datasets, new Set(["af/ledger.push|ftp/ledger.out"]));
    expect(flows).toEqual([
      { from: "payments", to: "fraud", count: 1, pii: 1, unencrypted: 0 },
      { from: "ledger", to: "(no product)", count: 1, pii: 0, unencrypted: 1 },
    ]);
    expect(boxes.find((b) => b.product === "payments")).toEqual({ product: "payments", datasets: 1, pii: 1 });
  });
});

describe("steward actions follow the signed-in key's role (the API still judges)", () => {
  const me = (role: string, product: string | null) => ({ keyId: "k", keyName: "n", role, product });
  it("shows waive and grant actions to the product's steward and to admins only", () => {
    expect(mayStewardProduct(me("steward", "payments"), "payments")).toBe(true);
    expect(mayStewardProduct(me("steward", "payments"), "fraud")).toBe(false);
    expect(mayStewardProduct(me("steward", "payments"), null)).toBe(false);
    expect(mayStewardProduct(me("engineer", "payments"), "payments")).toBe(false);
    expect(mayStewardProduct(me("auditor", null), "payments")).toBe(false);
    expect(mayStewardProduct(me("admin", null), null)).toBe(true);
    expect(mayStewardAny(me("engineer", "payments"))).toBe(false);
    expect(mayStewardAny(me("steward", "fraud"))).toBe(true);
  });
  it("shows them when the role is unknown, leaving the decision to the API", () => {
    expect(mayStewardProduct(null, "payments")).toBe(true);
    expect(mayStewardAny(null)).toBe(true);
  });
});
