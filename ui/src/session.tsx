// Who the signed-in key is (GET /api/v1/me), so pages show steward/admin actions only to roles the policy
// lets act. This only hides buttons: the API still judges every call (and says why when it refuses).
import { createContext, useContext } from "react";

export interface Me {
  keyId: string;
  keyName: string;
  role: string;
  product: string | null;
}

/** null while loading or when /me could not be read: then actions are shown and the API decides. */
export const MeContext = createContext<Me | null>(null);

export function useMe(): Me | null {
  return useContext(MeContext);
}

/** Whether `me` may waive / un-waive a finding of `product` or give and revoke its grants
 * (catalog/policies/policy.csv: a steward of that product, or an admin). Unknown `me`: true. */
export function mayStewardProduct(me: Me | null, product: string | null | undefined): boolean {
  if (!me) return true;
  if (me.role === "admin") return true;
  if (me.role !== "steward") return false;
  return product != null && me.product === product; // an unowned subject's: admins only
}

/** Whether `me`'s role may steward any product at all (admin, steward). Unknown `me`: true. */
export function mayStewardAny(me: Me | null): boolean {
  return !me || me.role === "admin" || me.role === "steward";
}
