// farewell.drain(): before a process exits, the addon's teardowns still in
// flight are awaited, and hurried at the deadline (the addon's thread does
// not keep Node alive). Its own file: a hurry lasts for the process.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import farewell from '../../index.js';
import { clientTimeWait, serverTimeWait } from './helpers.mjs';

test('drain() with nothing in flight resolves at once with 0', async () => {
  assert.equal(await farewell.drain(5000), 0);
});

test('drain() hurries a teardown that would outlive its deadline: the goodbye delivered, then a reset, no TIME-WAIT on either side', async () => {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const accepted = new Promise((resolve) => server.once('connection', resolve));
  // A client that reads but never closes: peer-first's 10 s grace would hold it.
  const client = net.connect(port, '127.0.0.1');
  const received = [];
  const clientEnd = new Promise((resolve) => {
    client.on('data', (chunk) => received.push(chunk));
    client.on('error', (error) => resolve(error.code));
    client.on('end', () => resolve('eof'));
  });
  const socket = await accepted;
  const closing = farewell.close(socket, 'BYE\n', { grace: 10000 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(farewell.stats().inFlight, 1, 'the teardown waits in its grace');
  const started = Date.now();
  const hurried = await farewell.drain(300);
  const took = Date.now() - started;
  assert.equal(hurried, 1);
  assert.equal(farewell.stats().inFlight, 0);
  assert.ok(took < 5000, `drain took ${took} ms, not the 10 s grace`);
  const outcome = await closing;
  assert.equal(outcome.ending, 'reset-at-deadline');
  assert.equal(outcome.goodbye, 'confirmed');
  assert.equal(await clientEnd, 'ECONNRESET');
  assert.equal(Buffer.concat(received).toString(), 'BYE\n', 'the goodbye arrived before the reset');
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT');
  server.close();
});
