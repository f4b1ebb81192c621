// Produced summary_grid_split_2_units.json: k6 v1.1.0, one run per unit i in 0..1 with
// `--execution-segment i/2:(i+1)/2 --execution-segment-sequence 0,1/2,1 --summary-export
// --summary-trend-stats "$(results.trend_stats())"` (avg,min,max,count and the 150 GRID
// percentiles) against a loopback server answering 200 on /ok and 500 on /fail (PORT env).
// cart_time gets i + 1 for the run's iteration i, so over both units it holds exactly 1..200.
import http from "k6/http";
import exec from "k6/execution";
import { Trend } from "k6/metrics";
const cartTime = new Trend("cart_time");
const queueDepth = new Trend("queue_depth");
export const options = {
  scenarios: { s: { executor: "shared-iterations", vus: 4, iterations: 200, maxDuration: "60s" } },
};
const BASE = `http://127.0.0.1:${__ENV.PORT}`;
export default function () {
  const i = exec.scenario.iterationInTest;
  http.get(`${BASE}/ok`);
  http.get(`${BASE}/fail`);
  cartTime.add(i + 1);
  queueDepth.add(((i * 37) % 200) / 4);
}
