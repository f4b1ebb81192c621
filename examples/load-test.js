// Bundled example: 300 requests shared by every unit, each unit tagging its requests.
// TARGET comes from the `environment` config (TARGET=http://host:port).
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: {
    shared: { executor: 'shared-iterations', vus: 6, iterations: 300, maxDuration: '60s' },
  },
  thresholds: { http_req_failed: ['rate<0.01'] },
};

export default function () {
  const res = http.get(`${__ENV.TARGET}/demo`, { headers: { 'X-K6-Unit': __ENV.K6_K8S_UNIT } });
  check(res, { 'status is 200': (r) => r.status === 200 });
}
