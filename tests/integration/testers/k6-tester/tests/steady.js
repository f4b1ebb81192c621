// 3 virtual users (one per unit over 3 units) for 10 seconds: steady load without a target.
import { sleep } from 'k6';

export const options = {
  scenarios: {
    steady: { executor: 'constant-vus', vus: 3, duration: '10s' },
  },
};

export default function () {
  sleep(0.5);
}
