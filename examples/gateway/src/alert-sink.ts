import { WorkerEntrypoint } from "cloudflare:workers";
import type { AlertNotification } from "../../../rpc";

/**
 * Receives tollgate's alerts through its `ALERT_SINK` service binding (tollgate's
 * wrangler.toml). It only logs them; a real receiver would page someone or post to a chat,
 * dropping an `alertId` it has already handled: delivery is at least once across the network.
 */
export class AlertSink extends WorkerEntrypoint {
  notify(alert: AlertNotification): void {
    console.log(`[alert] ${alert.alertId} (${alert.kind}): ${alert.message}${alert.description ? ` (${alert.description})` : ""}`);
  }
}
