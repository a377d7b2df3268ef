// farewell.drain() and the fast path: a `Connection: close` response's
// connection that waits on Node's own loop for its client's FIN (no
// teardown of the addon yet) is awaited and hurried at the deadline too,
// or a process that exits after drain() would cut it under its grace.
// Its own file: a hurry lasts for the process.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import farewell from '../../index.js';
import { BODY, clientTimeWait, serverTimeWait, startServer, stop } from './helpers.mjs';

test('drain() hurries a connection waiting on Node\'s loop for a silent client: its response whole, then a reset, no TIME-WAIT on either side', async (t) => {
  const { server, port } = await startServer({ attached: true, options: { grace: 10000 } });
  t.after(() => stop(server));
  // A client that sends Connection: close, then neither reads on nor closes
  // until the server ends the connection.
  const client = net.connect(port, '127.0.0.1');
  const received = [];
  const clientEnd = new Promise((resolve) => {
    client.on('data', (chunk) => received.push(chunk));
    client.on('error', (error) => resolve(error.code));
    client.on('end', () => resolve('eof'));
  });
  client.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  const deadline = Date.now() + 5000;
  while (!Buffer.concat(received).toString().endsWith(BODY) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(farewell.stats().inFlight, 0, 'no teardown of the addon: the wait is on Node\'s loop');
  const started = Date.now();
  const hurried = await farewell.drain(300);
  const took = Date.now() - started;
  assert.equal(hurried, 1, 'the waiting connection counts');
  assert.ok(took < 5000, `drain took ${took} ms, not the 10 s grace`);
  assert.equal(farewell.stats().inFlight, 0);
  assert.equal(await clientEnd, 'ECONNRESET');
  assert.ok(Buffer.concat(received).toString().endsWith(BODY), 'the response arrived whole before the reset');
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT');
  client.destroy();
});
