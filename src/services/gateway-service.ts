import { RpcTarget } from "cloudflare:workers";
import type { AuthorizeResult, GatewayApi } from "../../rpc/gateway";
import { unimplemented } from "../errors";

/** The gateway hot path. Answers `UNIMPLEMENTED` until the gateway issue lands. */
export class GatewayService extends RpcTarget implements GatewayApi {
  async authorize(_input: unknown): Promise<AuthorizeResult> {
    throw unimplemented("Gateway.authorize", "gateway issue");
  }

  async settle(_input: unknown): Promise<{ balance: number }> {
    throw unimplemented("Gateway.settle", "gateway issue");
  }
}
