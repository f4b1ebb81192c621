// Bundled example: 1500 requests shared by every unit; each unit's slice is 1/N of them.
// TARGET comes from the `environment` config (TARGET=http://host:port); the charm sets
// K6_K8S_UNIT in k6's environment, so each request says which unit sent it.
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  scenarios: {
    shared: { executor: 'shared-iterations', vus: 15, iterations: 1500, maxDuration: '60s' },
  },
  thresholds: { http_req_failed: ['rate<0.01'] },
};

export default function () {
  const res = http.get(`${__ENV.TARGET}/demo`, { headers: { 'X-K6-Unit': __ENV.K6_K8S_UNIT } });
  check(res, { 'status is 200': (r) => r.status === 200 });
  sleep(0.02);
}
