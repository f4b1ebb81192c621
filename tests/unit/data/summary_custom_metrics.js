// Produced summary_custom_metrics.json: k6 v1.1.0, `k6 run --summary-export summary.json` against
// a loopback server answering 200 on /ok and 500 on /fail (PORT env).
import http from "k6/http";
import { check } from "k6";
import { Counter, Trend, Rate, Gauge } from "k6/metrics";
const myCounter = new Counter("my_counter");
const myTrend = new Trend("my_trend");
const myRate = new Rate("my_rate");
const myGauge = new Gauge("my_gauge");
export const options = { scenarios: { s: { executor: "shared-iterations", vus: 2, iterations: 10 } } };
const BASE = `http://127.0.0.1:${__ENV.PORT}`;
export default function () {
  const ok = http.get(`${BASE}/ok`);
  const bad = http.get(`${BASE}/fail`);
  check(ok, { "ok is 200": (r) => r.status === 200 });
  check(bad, { "bad is 200": (r) => r.status === 200 });
  myCounter.add(3);
  myTrend.add(__ITER * 10);
  myRate.add(__ITER % 2 === 0);
  myGauge.add(__ITER);
}
