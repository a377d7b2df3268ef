// Shared by the tests: servers on loopback, real clients, the kernel's count
// of server TIME-WAIT entries.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';

import farewell from '../../index.js';

export const run = promisify(execFile);

/** A response body big enough to span several segments, with a known end. */
export const BODY = 'farewell '.repeat(2000) + 'end\n';

/** An http.Server on 127.0.0.1 answering BODY, attached to farewell when asked. */
export async function startServer({ attached, options } = {}) {
  const server = http.createServer((request, response) => {
    request.resume();
    response.setHeader('Content-Type', 'text/plain');
    response.end(BODY);
  });
  if (attached) farewell.attach(server, options);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port, url: `http://127.0.0.1:${server.address().port}/` };
}

export function stop(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Server-side TIME-WAIT entries on `port`, as the kernel counts them (ss). */
export async function serverTimeWait(port) {
  const { stdout } = await run('ss', ['-Htan', 'state', 'time-wait', `( sport = :${port} )`]);
  return stdout.split('\n').filter((line) => line.trim() !== '').length;
}

/** Client-side TIME-WAIT entries toward `port` (the remote port is the server's), as the kernel counts them. */
export async function clientTimeWait(port) {
  const { stdout } = await run('ss', ['-Htan', 'state', 'time-wait', `( dport = :${port} )`]);
  return stdout.split('\n').filter((line) => line.trim() !== '').length;
}

/** Waits until farewell has no teardown in flight (at most `limit` ms). */
export async function settled(limit = 3000) {
  const deadline = Date.now() + limit;
  while (farewell.stats().inFlight > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // The kernel's side of the last resets and FINs.
  await new Promise((resolve) => setTimeout(resolve, 100));
}

/** `n` curl requests with `Connection: close`, one after the other; their bodies. */
export async function curlClose(url, n) {
  const bodies = [];
  for (let i = 0; i < n; i++) {
    const { stdout } = await run('curl', ['-sS', '--fail', '-H', 'Connection: close', url]);
    bodies.push(stdout);
  }
  return bodies;
}

/** `ab -n requests -c concurrency` (HTTP/1.0, no keep-alive): its counts and summary. */
export async function ab(url, requests, concurrency) {
  const { stdout } = await run('ab', ['-q', '-n', String(requests), '-c', String(concurrency), url], {
    maxBuffer: 1 << 20,
  });
  const number = (label) => Number((new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(stdout) || [])[1]);
  return {
    complete: number('Complete requests'),
    failed: number('Failed requests'),
    non2xx: number('Non-2xx responses') || 0,
    summary: stdout
      .split('\n')
      .filter((line) => /^(Complete|Failed|Requests per second|Time per request)/.test(line))
      .join('\n'),
  };
}
