// farewell.attach(https.Server): each connection the server ends gets TLS
// close_notify, then no FIN: the client reads a clean TLS end and closes
// first, and the server keeps no TIME-WAIT. Clients we did not write:
// python's ssl module (which tells close_notify from a bare end of file, and
// lets us look at the TCP socket under it) and curl. A plain https.Server is
// the contrast (close_notify and a FIN at once; the server keeps TIME-WAIT).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import farewell from '../../index.js';
import { BODY, clientTimeWait, run, serverTimeWait, settled, stop } from './helpers.mjs';

/** A self-signed certificate for localhost, made by openssl in a temporary folder. */
async function certificate() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farewell-node-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=localhost']);
  const made = { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
  fs.rmSync(dir, { recursive: true, force: true });
  return made;
}

const made = certificate();

async function startTls({ attached }) {
  const server = https.createServer(await made, (request, response) => {
    request.resume();
    response.setHeader('Content-Type', 'text/plain');
    response.end(BODY);
  });
  if (attached) farewell.attach(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return { server, port, url: `https://127.0.0.1:${port}/` };
}

// Python's ssl client, connected to argv[1] on loopback (no certificate check):
// the start of the two programs below.
const CONNECT = `
import socket, ssl, sys, time
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), suppress_ragged_eofs=False)
`;

// Reads a `Connection: close` response over TLS until the TLS end, then
// looks at the TCP socket underneath (a duplicate of its descriptor) without
// blocking: has the server's FIN come too? Then closes. Prints how the TLS
// stream ended, `fin` or `no-fin`, and the bytes read.
const CLIENT = `${CONNECT}s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    end = "close_notify"
except ssl.SSLEOFError:
    end = "eof-without-close_notify"
except ConnectionResetError:
    end = "reset"
time.sleep(0.05)
tcp = socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM)
try:
    fin = tcp.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
except BlockingIOError:
    fin = False
tcp.close()
s.close()
print(end, "fin" if fin else "no-fin", int(data.endswith(sys.argv[2].encode())))
`;

async function pythonTls(port, n) {
  const results = [];
  for (let i = 0; i < n; i++) {
    const { stdout } = await run('python3', ['-c', CLIENT, String(port), BODY.slice(-40)], { timeout: 15000 });
    results.push(stdout.trim());
  }
  return results;
}

test('attached https.Server: close_notify without a FIN, the python client closes first, 0 server TIME-WAIT', async (t) => {
  const { server, port } = await startTls({ attached: true });
  t.after(() => stop(server));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const results = await pythonTls(port, 10);
  // The whole body, a clean TLS end, and no FIN while the client had not closed.
  assert.deepEqual(results, Array(10).fill('close_notify no-fin 1'));
  await settled();
  assert.equal(outcomes.length, 10);
  for (const outcome of outcomes) {
    assert.equal(outcome.ending, 'peer-closed');
    assert.equal(outcome.timeWait, 'peer');
  }
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 10, 'client TIME-WAIT: python closed each first');
});

test('attached https.Server: curl -k Connection: close x10 gets whole bodies, 0 server TIME-WAIT', async (t) => {
  const { server, port, url } = await startTls({ attached: true });
  t.after(() => stop(server));
  for (let i = 0; i < 10; i++) {
    const { stdout } = await run('curl', ['-sSk', '--fail', '--max-time', '10', '-H', 'Connection: close', url]);
    assert.equal(stdout, BODY);
  }
  await settled();
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
});

test('plain https.Server (no attach): close_notify and a FIN at once, the server keeps TIME-WAIT (the contrast)', async (t) => {
  const { server, port } = await startTls({ attached: false });
  t.after(() => stop(server));
  const results = await pythonTls(port, 5);
  assert.deepEqual(results, Array(5).fill('close_notify fin 1'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(await serverTimeWait(port), 5, 'the server closed first each time');
});

// A keep-alive client that reads its response and waits: the server's
// closeIdleConnections() ends the connection through farewell, close_notify
// first, then (idle: grace 0) a reset once everything is ACKed.
const IDLE = `${CONNECT}s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while not data.endswith(sys.argv[2].encode()):
    data += s.recv(65536)
print("response", flush=True)
try:
    end = "close_notify" if s.recv(65536) == b"" else "data"
except ssl.SSLEOFError:
    end = "eof-without-close_notify"
except ConnectionResetError:
    end = "reset"
print(end, flush=True)
`;

test('attached https.Server: closeIdleConnections sends close_notify to an idle keep-alive client, no server TIME-WAIT', async (t) => {
  const { server, port } = await startTls({ attached: true });
  t.after(() => stop(server));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const { spawn } = await import('node:child_process');
  const client = spawn('python3', ['-c', IDLE, String(port), BODY.slice(-40)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => client.kill('SIGKILL'));
  let out = '';
  client.stdout.setEncoding('utf8');
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no response within 10 s: ${out}`)), 10000);
    client.stdout.on('data', (text) => {
      out += text;
      if (out.includes('response\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  server.closeIdleConnections();
  const code = await new Promise((resolve) => client.on('exit', resolve));
  assert.equal(code, 0);
  assert.equal(out, 'response\nclose_notify\n', 'the whole response, then a clean TLS end');
  await settled();
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0].ending, 'reset-after-grace');
  assert.equal(outcomes[0].timeWait, 'nobody');
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
});
