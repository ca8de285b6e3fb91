import { RpcTarget } from "cloudflare:workers";
import type { Alert, AlertRule, AlertRuleView, AlertsApi, ListAlertsInput } from "../../../rpc/alerts";
import type { Env } from "../../platform/env";
import { ALERTS_NAME } from "../../platform/names";

/**
 * The alerts API: passes each call to the one `AlertsDO`, which validates it. Served by
 * `Admin.alerts()` and by capnweb's `AdminApi.alerts()`.
 */
export class AlertsService extends RpcTarget implements AlertsApi {
  readonly #env: Env;

  constructor(env: Env) {
    super();
    this.#env = env;
  }

  async setRule(input: AlertRule): Promise<AlertRuleView> {
    return this.#alerts().setRule(input);
  }

  async deleteRule(input: { ruleId: string }): Promise<{ deleted: boolean }> {
    return this.#alerts().deleteRule(input);
  }

  async rules(): Promise<{ rules: AlertRuleView[] }> {
    return this.#alerts().rules();
  }

  async list(input?: ListAlertsInput): Promise<{ alerts: Alert[] }> {
    return this.#alerts().list(input);
  }

  async acknowledge(input: { alertId: string }): Promise<Alert> {
    return this.#alerts().acknowledge(input);
  }

  async mute(input: { ruleId: string; untilMs: number }): Promise<AlertRuleView> {
    return this.#alerts().mute(input);
  }

  async unmute(input: { ruleId: string }): Promise<AlertRuleView> {
    return this.#alerts().unmute(input);
  }

  #alerts() {
    return this.#env.ALERTS.getByName(ALERTS_NAME);
  }
}
