import { describe, expect, it } from "vitest";
import { diffFields } from "./pages/DatasetPage";
import { productFlows } from "./pages/ProductMapPage";

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
