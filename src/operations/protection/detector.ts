import type { AnomalyEvidence, AnomalyPolicy, AnomalyRule } from "../../../rpc/protection";

const MINUTE_MS = 60_000;
/**
 * A client idle longer than this is judged against the priors again: after a day of zeros its
 * rate mean is gone anyway, and replaying that many idle minutes would cost for nothing.
 */
export const BASELINE_IDLE_RESET_MS = 24 * 60 * MINUTE_MS;

/**
 * One client's baseline and its open minute. The baseline is an exponentially weighted mean
 * and variance of requests per minute and of the minute's share of client errors (4xx other
 * than 429: 429 is tollgate's own answer to a burst, which the rate already sees).
 */
export interface ClientBaseline {
  /** Start of the open minute, whose counts follow. */
  minuteMs: number;
  requests: number;
  clientErrors: number;
  notFound: number;
  serverErrors: number;
  /** Closed minutes folded into the baseline since the client was new. */
  minutes: number;
  rateMean: number;
  rateVar: number;
  scanMean: number;
  scanVar: number;
  /** Not flagged again before this (one episode, one flag). */
  flaggedUntilMs: number;
  /**
   * The minute of the latest flag: it is not folded in (it would teach the baseline the attack).
   * The minutes after it are: a blocked client's requests are answered 429, which the error
   * share leaves out, and a client whose new level persists becomes its new normal.
   */
  flaggedMinuteMs: number;
}

export interface Detection {
  rule: AnomalyRule;
  at: number;
  evidence: AnomalyEvidence;
}

/** A client never seen (or idle past `BASELINE_IDLE_RESET_MS`): the priors, and an empty minute. */
export function newBaseline(policy: AnomalyPolicy, minuteMs: number): ClientBaseline {
  return {
    minuteMs,
    requests: 0,
    clientErrors: 0,
    notFound: 0,
    serverErrors: 0,
    minutes: 0,
    rateMean: policy.priorRateMean,
    rateVar: policy.priorRateSd ** 2,
    scanMean: policy.priorScanShare,
    scanVar: policy.priorScanSd ** 2,
    flaggedUntilMs: 0,
    flaggedMinuteMs: -1,
  };
}

/** One exponentially weighted step (West/Finch): the mean and variance after observing `x`. */
export function ewStep(mean: number, variance: number, x: number, alpha: number): [number, number] {
  const diff = x - mean;
  const increment = alpha * diff;
  return [mean + increment, Math.max(0, (1 - alpha) * (variance + diff * increment))];
}

/**
 * Closes the open minute and every idle minute before `minuteMs`, then opens `minuteMs`.
 * The open minute is folded unless a flag was raised in it; each idle minute folds a rate of 0 (the
 * error share of an empty minute is undefined, so it stays).
 */
export function rollTo(state: ClientBaseline, minuteMs: number, policy: AnomalyPolicy): ClientBaseline {
  if (minuteMs <= state.minuteMs) return state;
  if (minuteMs - state.minuteMs > BASELINE_IDLE_RESET_MS) {
    return { ...newBaseline(policy, minuteMs), flaggedUntilMs: state.flaggedUntilMs, flaggedMinuteMs: state.flaggedMinuteMs };
  }
  const next = { ...state };
  if (state.requests > 0 && state.minuteMs !== state.flaggedMinuteMs) {
    [next.rateMean, next.rateVar] = ewStep(state.rateMean, state.rateVar, state.requests, policy.alpha);
    [next.scanMean, next.scanVar] = ewStep(state.scanMean, state.scanVar, state.clientErrors / state.requests, policy.alpha);
    next.minutes += 1;
  }
  const idle = (minuteMs - state.minuteMs) / MINUTE_MS - 1;
  for (let i = 0; i < idle; i += 1) {
    [next.rateMean, next.rateVar] = ewStep(next.rateMean, next.rateVar, 0, policy.alpha);
  }
  next.minutes += idle;
  next.minuteMs = minuteMs;
  next.requests = 0;
  next.clientErrors = 0;
  next.notFound = 0;
  next.serverErrors = 0;
  return next;
}

/** The request count a minute must exceed to be a burst, for this baseline. */
export function burstThreshold(state: ClientBaseline, policy: AnomalyPolicy): { threshold: number; sd: number } {
  const sd = Math.max(Math.sqrt(state.rateVar), policy.rateMinSd, policy.rateMinRelativeSd * state.rateMean);
  return { threshold: Math.max(policy.rateMinCount, state.rateMean + policy.rateK * sd), sd };
}

/** The client-error share a minute (of at least `scanMinCount` requests) must exceed to be a scan. */
export function scanThreshold(state: ClientBaseline, policy: AnomalyPolicy): { threshold: number; sd: number } {
  const sd = Math.max(Math.sqrt(state.scanVar), policy.scanMinSd);
  return { threshold: Math.max(policy.scanMinShare, state.scanMean + policy.scanK * sd), sd };
}

/**
 * Counts one hit into its client's baseline (rolling the minute forward first) and judges the
 * minute so far. Returns the new state and, for the hit that pushes the minute past a threshold,
 * the detection with its evidence. A hit from a minute before the open one is late: it is not
 * counted (that minute is closed). After a detection the client is not judged until
 * `flaggedUntilMs`, so one episode is one flag.
 */
export function observe(
  previous: ClientBaseline,
  hit: { at: number; status: number },
  policy: AnomalyPolicy,
): { state: ClientBaseline; detection?: Detection } {
  const minuteMs = hit.at - (hit.at % MINUTE_MS);
  if (minuteMs < previous.minuteMs) return { state: previous };
  const state = rollTo(previous, minuteMs, policy);
  const next: ClientBaseline = { ...state, requests: state.requests + 1 };
  if (hit.status >= 400 && hit.status < 500 && hit.status !== 429) next.clientErrors += 1;
  if (hit.status === 404) next.notFound += 1;
  if (hit.status >= 500) next.serverErrors += 1;
  if (!policy.enabled || hit.at < next.flaggedUntilMs) return { state: next };

  const burst = burstThreshold(next, policy);
  const scan = scanThreshold(next, policy);
  let rule: AnomalyRule | undefined;
  let threshold = 0;
  if (next.requests > burst.threshold) {
    rule = "burst";
    threshold = burst.threshold;
  } else if (next.requests >= policy.scanMinCount && next.clientErrors / next.requests > scan.threshold) {
    rule = "scan";
    threshold = scan.threshold;
  }
  if (rule === undefined) return { state: next };
  next.flaggedUntilMs = hit.at + policy.blockMs;
  next.flaggedMinuteMs = minuteMs;
  return {
    state: next,
    detection: {
      rule,
      at: hit.at,
      evidence: {
        minuteMs,
        requests: next.requests,
        clientErrors: next.clientErrors,
        notFound: next.notFound,
        serverErrors: next.serverErrors,
        rateMean: next.rateMean,
        rateSd: burst.sd,
        scanShareMean: next.scanMean,
        scanShareSd: scan.sd,
        threshold,
        minutesSeen: next.minutes,
      },
    },
  };
}
