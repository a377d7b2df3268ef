// farewell.attach(http.Server) with clients we did not write (curl, ab) and a
// raw HTTP/1.0 reader: whole responses, end of file where owed, and no server
// TIME-WAIT in the kernel's table; a plain http.Server as the contrast.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';

import farewell from '../../index.js';
import { BODY, ab, curlClose, serverTimeWait, settled, startServer, stop } from './helpers.mjs';

test('attached http server: curl Connection: close x20 and ab -n 500 -c 4 leave no server TIME-WAIT', async (t) => {
  const { server, port, url } = await startServer({ attached: true });
  t.after(() => stop(server));
  const endings = {};
  server.on('farewell', (outcome) => {
    endings[outcome.ending] = (endings[outcome.ending] || 0) + 1;
  });
  const bodies = await curlClose(url, 20);
  assert.equal(bodies.length, 20);
  for (const body of bodies) assert.equal(body, BODY);
  const result = await ab(url, 500, 4);
  t.diagnostic(`ab -n 500 -c 4:\n${result.summary}`);
  assert.equal(result.complete, 500);
  assert.equal(result.failed, 0);
  assert.equal(result.non2xx, 0);
  await settled();
  const timeWait = await serverTimeWait(port);
  t.diagnostic(`endings: ${JSON.stringify(endings)}; server TIME-WAIT: ${timeWait}`);
  assert.equal(timeWait, 0, 'server TIME-WAIT entries');
  // ab may open a connection more than it needs, and close it unused.
  assert.ok(Object.values(endings).reduce((a, b) => a + b, 0) >= 520);
});

test('attached http server: a raw HTTP/1.0 reader sees the whole body, then end of file within 1.5 s', async (t) => {
  const { server, port } = await startServer({ attached: true });
  t.after(() => stop(server));
  const started = Date.now();
  const received = await new Promise((resolve, reject) => {
    const chunks = [];
    const client = net.connect(port, '127.0.0.1', () => client.write('GET / HTTP/1.0\r\nHost: x\r\n\r\n'));
    const timer = setTimeout(() => reject(new Error('no end of file within 1.5 s')), 1500);
    client.on('data', (chunk) => chunks.push(chunk));
    client.on('end', () => {
      clearTimeout(timer);
      client.end();
      resolve(Buffer.concat(chunks).toString());
    });
    client.on('error', (error) => {
      clearTimeout(timer);
      reject(error); // ECONNRESET here is the bug this test is for
    });
  });
  t.diagnostic(`end of file after ${Date.now() - started} ms`);
  assert.match(received, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(received.endsWith(`\r\n\r\n${BODY}`), 'the whole body');
  await settled();
  assert.equal(await serverTimeWait(port), 0);
});

test('attached http server: an idle keep-alive connection closed by closeIdleConnections is reset once ACKed, no TIME-WAIT', async (t) => {
  const { server, port, url } = await startServer({ attached: true });
  t.after(() => stop(server));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const agent = new http.Agent({ keepAlive: true });
  const body = await new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
  assert.equal(body, BODY);
  await new Promise((resolve) => setTimeout(resolve, 50));
  server.closeIdleConnections();
  await settled();
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0].ending, 'reset-after-grace');
  assert.equal(outcomes[0].timeWait, 'nobody');
  assert.equal(await serverTimeWait(port), 0);
  agent.destroy();
});

test('plain http server (no attach): the same clients leave server TIME-WAIT (the contrast)', async (t) => {
  const { server, port, url } = await startServer({ attached: false });
  t.after(() => stop(server));
  const bodies = await curlClose(url, 20);
  for (const body of bodies) assert.equal(body, BODY);
  const result = await ab(url, 500, 4);
  assert.equal(result.failed, 0);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const timeWait = await serverTimeWait(port);
  t.diagnostic(`plain http.Server, ab -n 500 -c 4:\n${result.summary}\nserver TIME-WAIT: ${timeWait}`);
  assert.ok(timeWait > 0, 'a plain server keeps TIME-WAIT');
});

test('farewell.stats counts by ending', () => {
  const stats = farewell.stats();
  assert.ok(stats.started >= stats.finished);
  assert.equal(
    Object.values(stats.byEnding).reduce((a, b) => a + b, 0),
    stats.finished
  );
});

test('attached net server: socket.end(data) delivers the data, the client closes first, no server TIME-WAIT', async (t) => {
  const server = net.createServer((socket) => socket.end('hello from net\n'));
  farewell.attach(server);
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const port = server.address().port;
  const received = await new Promise((resolve, reject) => {
    const client = net.connect(port, '127.0.0.1');
    client.setEncoding('utf8');
    client.on('data', (text) => {
      client.end(); // a client that closes once it has its line
      resolve(text);
    });
    client.on('error', reject);
  });
  assert.equal(received, 'hello from net\n');
  await settled();
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0].ending, 'peer-closed');
  assert.equal(outcomes[0].timeWait, 'peer');
  assert.equal(await serverTimeWait(port), 0);
});

test('attached http server: the keep-alive timeout resets an idle connection once ACKed, no TIME-WAIT', async (t) => {
  const { server, port } = await startServer({ attached: true });
  t.after(() => stop(server));
  server.keepAliveTimeout = 100;
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  // A raw HTTP/1.1 client that keeps its connection open and idle (Node's
  // agent would close it itself, on the server's Keep-Alive hint).
  const client = net.connect(port, '127.0.0.1', () => client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  t.after(() => client.destroy());
  let received = '';
  client.setEncoding('utf8');
  client.on('data', (text) => (received += text));
  const reset = new Promise((resolve) => client.on('error', resolve));
  const error = await Promise.race([reset, new Promise((resolve) => setTimeout(resolve, 2000))]);
  assert.equal(error && error.code, 'ECONNRESET', 'the idle client is reset');
  assert.ok(received.endsWith(`\r\n\r\n${BODY}`), 'the whole response first');
  await settled();
  assert.equal(outcomes.length, 1, 'the timeout ended the connection through farewell');
  assert.equal(outcomes[0].ending, 'reset-after-grace');
  assert.equal(await serverTimeWait(port), 0);
});
