// 12 iterations shared by every k6 unit; passes only if the provider's environment arrived.
import { check, sleep } from 'k6';

export const options = {
  scenarios: {
    smoke: { executor: 'shared-iterations', vus: 3, iterations: 12, maxDuration: '60s' },
  },
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  check(__ENV.GREETING, { 'GREETING from k6-tester': (g) => g === 'hello from k6-tester' });
  sleep(0.1);
}
