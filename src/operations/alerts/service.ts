import { RpcTarget } from "cloudflare:workers";
import type { Alert, AlertRule, AlertRuleView, AlertsApi, ListAlertsInput } from "../../../rpc/alerts";
import type { Env } from "../../platform/env";
import { ALERTS_NAME } from "./alerts-do";
import { alertRefSchema, alertRuleSchema, listAlertsInputSchema, muteSchema, ruleRefSchema } from "./schemas";
import { parseInput } from "../../platform/schemas";

/**
 * The alerts API: validates at the boundary, then calls the one `AlertsDO`. Served by
 * `Admin.alerts()` and by capnweb's `AdminApi.alerts()`.
 */
export class AlertsService extends RpcTarget implements AlertsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async setRule(input: AlertRule): Promise<AlertRuleView> {
    return this.#alerts().setRule(parseInput(alertRuleSchema, input, "alert rule"));
  }

  async deleteRule(input: { ruleId: string }): Promise<{ deleted: boolean }> {
    return this.#alerts().deleteRule(parseInput(ruleRefSchema, input, "deleteRule input"));
  }

  async rules(): Promise<{ rules: AlertRuleView[] }> {
    return this.#alerts().rules();
  }

  async list(input?: ListAlertsInput): Promise<{ alerts: Alert[] }> {
    return this.#alerts().list(parseInput(listAlertsInputSchema, input, "list input"));
  }

  async acknowledge(input: { alertId: string }): Promise<Alert> {
    return this.#alerts().acknowledge(parseInput(alertRefSchema, input, "acknowledge input"));
  }

  async mute(input: { ruleId: string; untilMs: number }): Promise<AlertRuleView> {
    return this.#alerts().mute(parseInput(muteSchema, input, "mute input"));
  }

  async unmute(input: { ruleId: string }): Promise<AlertRuleView> {
    return this.#alerts().unmute(parseInput(ruleRefSchema, input, "unmute input"));
  }

  #alerts() {
    return this.#env.ALERTS.getByName(ALERTS_NAME);
  }
}
