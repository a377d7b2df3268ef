// farewell.close() with what it cannot take: clear errors with codes, never a
// crash; and with what it can, the goodbye delivered.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import farewell from '../../index.js';

/** A connected pair on `address` (a port on loopback, or a Unix path): [server side, client side]. */
async function pair(listenOn) {
  const server = net.createServer();
  const accepted = new Promise((resolve) => server.once('connection', resolve));
  await new Promise((resolve) => server.listen(listenOn, resolve));
  const address = server.address();
  const client =
    typeof address === 'string' ? net.connect(address) : net.connect(address.port, '127.0.0.1');
  const serverSide = await accepted;
  await new Promise((resolve) => (client.connecting ? client.once('connect', resolve) : resolve()));
  server.close();
  return [serverSide, client];
}

test('close of a destroyed socket is rejected with EFAREWELL_CLOSED', async () => {
  const [socket, client] = await pair({ port: 0, host: '127.0.0.1' });
  socket.destroy();
  await assert.rejects(farewell.close(socket), { code: 'EFAREWELL_CLOSED' });
  client.destroy();
});

test('close of a Unix-domain socket is rejected with EFAREWELL_NOT_TCP, and the socket still works', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farewell-node-'));
  const [socket, client] = await pair(path.join(dir, 'sock'));
  await assert.rejects(farewell.close(socket, 'BYE\n'), { code: 'EFAREWELL_NOT_TCP' });
  const read = new Promise((resolve) => client.once('data', (data) => resolve(String(data))));
  socket.write('still here\n');
  assert.equal(await read, 'still here\n');
  socket.destroy();
  client.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('close twice: the second is rejected with EFAREWELL_ALREADY, the first ends the connection', async () => {
  const [socket, client] = await pair({ port: 0, host: '127.0.0.1' });
  const reset = new Promise((resolve) => client.on('error', resolve));
  client.resume();
  // A client that waits for the server: with no grace, the reset once
  // everything written is ACKed.
  const first = farewell.close(socket, null, { grace: 0 });
  await assert.rejects(farewell.close(socket), { code: 'EFAREWELL_ALREADY' });
  const outcome = await first;
  assert.equal(outcome.ending, 'reset-after-grace');
  assert.equal(outcome.timeWait, 'nobody');
  assert.equal((await reset).code, 'ECONNRESET');
  await assert.rejects(farewell.close(socket), { code: 'EFAREWELL_ALREADY' });
});

test('close of something that is not a socket, or with an unknown policy, is rejected', async () => {
  await assert.rejects(farewell.close({}), { code: 'ERR_INVALID_ARG_TYPE' });
  const [socket, client] = await pair({ port: 0, host: '127.0.0.1' });
  await assert.rejects(farewell.close(socket, null, { policy: 'nonsense' }), {
    code: 'EFAREWELL_BAD_OPTION',
  });
  socket.destroy();
  client.destroy();
});

test('close delivers what Node buffered, then the goodbye; the client reads both, then end of file', async () => {
  const [socket, client] = await pair({ port: 0, host: '127.0.0.1' });
  const chunks = [];
  client.on('data', (chunk) => chunks.push(chunk));
  const eof = new Promise((resolve, reject) => {
    client.on('end', () => {
      client.end(); // the client closes first: peer-first's passive close
      resolve();
    });
    client.on('error', reject);
  });
  const big = Buffer.alloc(4 << 20, 'x');
  socket.write(big);
  const outcome = await farewell.close(socket, 'BYE\n', { graceEnd: 'fin', grace: 1000 });
  await eof;
  const received = Buffer.concat(chunks);
  assert.equal(received.length, big.length + 4);
  assert.equal(received.subarray(big.length).toString(), 'BYE\n');
  assert.equal(outcome.goodbye, 'confirmed');
  assert.equal(outcome.goodbyeWritten, 4);
  assert.ok(socket.destroyed);
});
