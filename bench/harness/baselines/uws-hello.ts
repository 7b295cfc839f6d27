/** Baseline child: a raw uWebSockets.js hello-world on a free loopback port (answers every GET with a small JSON body). */
import uWS from 'uWebSockets.js';

const body = JSON.stringify({ status: 'ok', timestamp: new Date().toISOString(), uptime_s: 0, version: '0.0.0' });
const app = uWS.App().get('/*', (res) => {
  res.cork(() => res.writeHeader('Content-Type', 'application/json').end(body));
});
app.listen('127.0.0.1', 0, (socket) => {
  if (!socket) {
    process.stderr.write('uws-hello: cannot listen\n');
    process.exit(1);
  }
  const port = uWS.us_socket_local_port(socket);
  process.stdout.write(JSON.stringify({ ready: true, port }) + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
});
process.on('SIGTERM', () => process.exit(0));
