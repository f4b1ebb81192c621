// k6-k8s's watcher: judges the script's abortOnFail thresholds on the WHOLE run, live.
//
// Run by the leader as a one-shot k6 service after the release. Every `interval_s` it reads
// every participant's `GET /v1/metrics` (their REST APIs, in parallel), merges the live values
// by the rules of docs/k6-semantics.md ("Aborts") and, once a threshold's delayAbortEval has
// passed since the release, checks it. When the whole run has certainly crossed one, it logs
// one JSON line {"k6k8s_trip": {...}} and aborts itself (exit 108): the leader reads the line
// and stops every unit. It ends on its own when every participant has ended, or after until_s.
//
// The plan comes in the environment, K6K8S_WATCH (JSON):
//   {"endpoints": {"unit": "host:port"}, "started": epoch s, "interval_s": 1, "until_s": 3600,
//    "thresholds": [{"text", "metric", "stat", "op", "value", "delay_s"}]}
// stat: count, rate, value, avg, min, max, med, or p(N) as {"stat": "p", "percent": N}.
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';

const plan = JSON.parse(__ENV.K6K8S_WATCH);

export const options = {
  scenarios: {
    watch: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      maxDuration: `${Math.ceil(plan.until_s)}s`,
      gracefulStop: '0s',
    },
  },
};

const OPS = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
  '==': (a, b) => a === b,
  '===': (a, b) => a === b,
  '!=': (a, b) => a !== b,
};

// A unit's live metrics: {id: {type, sample}} from k6's JSON:API answer.
function index(body) {
  const found = {};
  for (const item of body.data || []) {
    if (item && item.id && item.attributes) {
      found[item.id] = { type: item.attributes.type, sample: item.attributes.sample || {} };
    }
  }
  return found;
}

function counterOf(unit, name) {
  const metric = unit[name];
  return metric && metric.type === 'counter' ? metric.sample.count || 0 : 0;
}

// The weight of a unit in a mean: its requests for k6's HTTP metrics, else its iterations.
function weightOf(unit, name) {
  return name.startsWith('http_req') ? counterOf(unit, 'http_reqs') : counterOf(unit, 'iterations');
}

function weightedMean(entries) {
  const total = entries.reduce((sum, e) => sum + e.weight, 0);
  if (total > 0) return entries.reduce((sum, e) => sum + e.value * e.weight, 0) / total;
  return entries.reduce((sum, e) => sum + e.value, 0) / entries.length;
}

const LEVELS = [[0, 'min'], [50, 'med'], [90, 'p(90)'], [95, 'p(95)'], [100, 'max']];

// [low, high]: where the whole run's p(percent) lies, from the units' own live percentiles
// (a quantile of the union lies between the units' quantiles at the same level).
function percentileBounds(samples, percent) {
  const below = LEVELS.filter(([level]) => level <= percent).pop();
  const above = LEVELS.find(([level]) => level >= percent);
  return [
    Math.min(...samples.map((s) => s[below[1]])),
    Math.max(...samples.map((s) => s[above[1]])),
  ];
}

// The whole run's live value of one threshold's stat: {low, high} (equal when it is a number),
// or null when the units' APIs cannot give it.
function liveValue(units, t) {
  const present = units.filter((u) => u[t.metric]);
  if (present.length === 0) return null;
  const type = present[0][t.metric].type;
  const samples = present.map((u) => u[t.metric].sample);
  const mean = (key) =>
    weightedMean(present.map((u) => ({ value: u[t.metric].sample[key] || 0, weight: weightOf(u, t.metric) })));
  let value = null;
  if (type === 'counter' && (t.stat === 'count' || t.stat === 'rate')) {
    value = samples.reduce((sum, s) => sum + (s[t.stat] || 0), 0);
  } else if (type === 'rate' && (t.stat === 'rate' || t.stat === 'value')) {
    value = mean('rate');
  } else if (type === 'gauge' && t.stat === 'value') {
    const values = samples.map((s) => s.value || 0);
    value = t.metric === 'vus' || t.metric === 'vus_max'
      ? values.reduce((a, b) => a + b, 0) : Math.max(...values);
  } else if (type === 'trend' && t.stat === 'min') {
    value = Math.min(...samples.map((s) => s.min));
  } else if (type === 'trend' && t.stat === 'max') {
    value = Math.max(...samples.map((s) => s.max));
  } else if (type === 'trend' && t.stat === 'avg') {
    value = mean('avg');
  } else if (type === 'trend' && (t.stat === 'med' || t.stat === 'p')) {
    const [low, high] = percentileBounds(samples, t.stat === 'med' ? 50 : t.percent);
    return { low, high };
  }
  return value === null ? null : { low: value, high: value };
}

// Crossed for certain: the threshold fails wherever in [low, high] the whole run's value is.
function certainlyCrossed(t, v) {
  const holds = OPS[t.op];
  if (t.op === '==' || t.op === '===') return t.value < v.low || t.value > v.high;
  if (t.op === '!=') return v.low === t.value && v.high === t.value;
  return !holds(v.low, t.value) && !holds(v.high, t.value);
}

function poll(last) {
  const names = Object.keys(plan.endpoints);
  const requests = names.map((name) => ({
    method: 'GET',
    url: `http://${plan.endpoints[name]}/v1/metrics`,
    params: { timeout: '2s', responseType: 'text', tags: { unit: name } },
  }));
  const responses = http.batch(requests);
  let answered = 0;
  names.forEach((name, i) => {
    const response = responses[i];
    if (response.status === 200) {
      try {
        last[name] = index(JSON.parse(response.body));
        answered += 1;
      } catch (e) {
        // a half-written answer: keep the last one
      }
    }
  });
  return answered;
}

export default function () {
  const last = {}; // each unit's last answer: a unit that has ended keeps its final values
  const deadline = Date.now() + plan.until_s * 1000;
  let seen = false;
  while (Date.now() < deadline) {
    const answered = poll(last);
    if (answered > 0) seen = true;
    else if (seen) return; // every participant has ended
    const elapsed = Date.now() / 1000 - plan.started;
    const units = Object.values(last);
    for (const t of plan.thresholds) {
      if (elapsed < t.delay_s) continue;
      const v = liveValue(units, t);
      if (v !== null && certainlyCrossed(t, v)) {
        const value = v.low === v.high ? v.low : [v.low, v.high];
        const trip = { threshold: t.text, value, at_s: elapsed, units: units.length };
        console.log(JSON.stringify({ k6k8s_trip: trip }));
        exec.test.abort(`abortOnFail threshold ${t.text} crossed on the whole run`);
      }
    }
    sleep(plan.interval_s);
  }
}
