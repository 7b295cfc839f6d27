/** Worker entry when the sources run through tsx (tests): Node 20 does not carry tsx's loader hooks into worker threads. */
import { register } from 'tsx/esm/api';

register();
const worker = await import('./worker.ts');
export default worker.default;
