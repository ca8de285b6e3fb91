import { RpcTarget } from "cloudflare:workers";
import type { Account, Balance, CreditsApi } from "../../rpc/credits";
import { unimplemented } from "../errors";

/** The credits API. Every method answers `UNIMPLEMENTED` until the ledger issue lands. */
export class CreditsService extends RpcTarget implements CreditsApi {
  async createAccount(_input: unknown): Promise<Account> {
    throw unimplemented("Credits.createAccount", "credit ledger issue");
  }

  async balance(_input: unknown): Promise<Balance> {
    throw unimplemented("Credits.balance", "credit ledger issue");
  }
}
