// Produced summary_trend_count_thresholds.json: k6 v1.1.0 (exit 99, thresholds crossed) with
// `--summary-trend-stats "avg,min,med,max,p(90),p(95),p(99),count" --summary-export`.
import http from "k6/http";
import { Trend, Rate, Counter } from "k6/metrics";
const unused = new Trend("unused_trend");
const unusedRate = new Rate("unused_rate");
const zeroCounter = new Counter("zero_counter");
export const options = { iterations: 3, vus: 1,
  thresholds: { http_req_failed: ["rate<0.1"], http_reqs: ["count>100"], unused_trend: ["max<5"] } };
export default function () { http.get(`http://127.0.0.1:${__ENV.PORT}/fail`); zeroCounter.add(0); }
