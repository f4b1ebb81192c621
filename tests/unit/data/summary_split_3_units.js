// Produced summary_split_3_units.json: k6 v1.1.0, one run per unit i in 0..2 with
// `--execution-segment i/3:(i+1)/3 --execution-segment-sequence 0,1/3,2/3,1 --summary-export`.
import http from "k6/http";
import { check, sleep } from "k6";
import { Counter, Trend } from "k6/metrics";
const orders = new Counter("orders");
const cartTime = new Trend("cart_time", true);
export const options = {
  scenarios: { s: { executor: "shared-iterations", vus: 3, iterations: 10, maxDuration: "30s" } },
  thresholds: { http_req_failed: ["rate<0.5"], "http_req_duration{expected_response:true}": ["p(95)<1000"] },
};
const BASE = `http://127.0.0.1:${__ENV.PORT}`;
export default function () {
  const a = http.get(`${BASE}/ok`);
  http.get(`${BASE}/ok`);
  const b = http.get(`${BASE}/fail`);
  check(a, { "status 200": (r) => r.status === 200 });
  check(b, { "fail is 500": (r) => r.status === 500, "fail is 200": (r) => r.status === 200 });
  orders.add(2);
  cartTime.add(5 + __ITER);
  sleep(0.3);
}
