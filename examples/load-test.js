// Bundled example: 1500 requests shared by every unit; each unit's slice is 1/N of them.
// TARGET comes from the `environment` config (TARGET=http://host:port); the charm sets
// K6_K8S_UNIT in k6's environment, so each request says which unit sent it.
// setup() runs once for the whole run (on the leader) and its data reaches every unit;
// teardown() runs once after every unit has ended; the thresholds are judged on the whole run,
// and the abortOnFail one stops every unit if the whole run's error rate crosses 5 %.
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  scenarios: {
    shared: { executor: 'shared-iterations', vus: 15, iterations: 1500, maxDuration: '60s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.01', { threshold: 'rate<0.05', abortOnFail: true, delayAbortEval: '2s' }],
    http_reqs: ['count>=1500'],
  },
};

const unit = () => ({ 'X-K6-Unit': __ENV.K6_K8S_UNIT });

export function setup() {
  http.get(`${__ENV.TARGET}/setup`, { headers: unit() });
  return { token: `demo-${Date.now()}` };
}

export default function (data) {
  const res = http.get(`${__ENV.TARGET}/demo`, { headers: { ...unit(), 'X-Token': data.token } });
  check(res, { 'status is 200': (r) => r.status === 200 });
  sleep(0.02);
}

export function teardown(data) {
  http.get(`${__ENV.TARGET}/teardown`, { headers: { ...unit(), 'X-Token': data.token } });
}
