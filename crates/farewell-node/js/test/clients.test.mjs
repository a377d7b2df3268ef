// farewell.attach(http.Server) with more clients we did not write, on
// loopback: wrk with `Connection: close`, python's http.client, a python
// client that half-closes after its requests, and one that ignores the
// goodbye (it keeps its connection open after a `Connection: close`
// response), one that floods after it, and closeAllConnections() during the
// wait. Each checks what the client received and both sides' TIME-WAIT
// in the kernel's table (`ss`: the server's port as the local one, then as
// the remote one).
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import farewell from '../../index.js';
import { BODY, clientTimeWait, curlClose, run, serverTimeWait, settled, startServer, stop } from './helpers.mjs';

/** Runs a python3 program with `args`, bounded by `limit` ms; its stdout. */
async function python(program, args, limit = 20000) {
  const { stdout } = await run('python3', ['-c', program, ...args.map(String)], {
    timeout: limit,
    maxBuffer: 1 << 20,
  });
  return stdout;
}

/** Counts the server's outcomes by ending. */
function countEndings(server) {
  const endings = {};
  server.on('farewell', (outcome) => {
    endings[outcome.ending] = (endings[outcome.ending] || 0) + 1;
  });
  return endings;
}

test('wrk Connection: close against an attached http.Server: every response, 0 errors, 0 server TIME-WAIT', async (t) => {
  const { server, port, url } = await startServer({ attached: true });
  t.after(() => stop(server));
  const endings = countEndings(server);
  // wrk checks each response's framing (Content-Length) and counts what it
  // could not read as errors; a Lua script stops each thread after 400.
  const script = 'local n = 0\nresponse = function() n = n + 1; if n >= 400 then wrk.thread:stop() end end\n';
  const { stdout } = await run(
    'sh',
    ['-c', `printf '%s' "$0" > "$1.lua" && wrk -t1 -c4 -d3s --timeout 2s -H 'Connection: close' -s "$1.lua" "$2"; rm -f "$1.lua"`,
      script, `/tmp/farewell-node-wrk-${process.pid}`, url],
    { timeout: 20000 }
  );
  t.diagnostic(stdout);
  const requests = Number((/(\d+) requests in/.exec(stdout) || [])[1]);
  assert.ok(requests >= 100, `wrk completed ${requests} requests`);
  assert.doesNotMatch(stdout, /Socket errors/, 'no connect, read, write or timeout errors');
  assert.doesNotMatch(stdout, /Non-2xx/, 'every response 200');
  await settled();
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  const clients = await clientTimeWait(port);
  t.diagnostic(`endings: ${JSON.stringify(endings)}; client TIME-WAIT: ${clients}`);
  // wrk closes each connection first once it read the response: it keeps the TIME-WAIT.
  assert.ok(clients >= requests * 0.9, `client TIME-WAIT ${clients} for ${requests} requests`);
  assert.ok((endings['peer-closed'] || 0) >= requests * 0.9);
});

const HTTP_CLIENT = `
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
bodies = set()
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/", headers={"Connection": "close"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, r.status
    bodies.add(body)
    c.close()
print(len(bodies), n, sum(len(b) for b in bodies))
`;

test("python http.client, Connection: close x50: whole bodies, the client closes first, 0 server TIME-WAIT", async (t) => {
  const { server, port } = await startServer({ attached: true });
  t.after(() => stop(server));
  const endings = countEndings(server);
  const out = (await python(HTTP_CLIENT, [port, 50])).trim();
  // One distinct body, 50 responses, of BODY's length.
  assert.equal(out, `1 50 ${BODY.length}`);
  await settled();
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 50, 'client TIME-WAIT: python closed each first');
  assert.deepEqual(endings, { 'peer-closed': 50 });
});

const HALF_CLOSE = `
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" * count)
sock.shutdown(socket.SHUT_WR)
data = b""
try:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    end = "eof"
except ConnectionResetError:
    end = "reset"
sock.close()
print(end, data.count(b"HTTP/1.1 200 OK"), len(data))
`;

for (const [weight, options] of [['light', undefined], ['heavy', { heavyClientThreshold: 0 }]]) {
  test(`a ${weight} python client that half-closes after 3 pipelined requests gets all 3 whole, then end of file, no reset`, async (t) => {
    const { server, port } = await startServer({ attached: true, options });
    t.after(() => stop(server));
    const outcomes = [];
    server.on('farewell', (outcome) => outcomes.push(outcome));
    const [end, responses, length] = (await python(HALF_CLOSE, [port, 3])).trim().split(' ');
    assert.equal(end, 'eof', 'end of file, not a reset');
    assert.equal(Number(responses), 3);
    // Each response is its head plus BODY; the last byte is BODY's.
    assert.ok(Number(length) > 3 * BODY.length, `${length} bytes`);
    await settled();
    t.diagnostic(`outcome: ${JSON.stringify(outcomes)}`);
    assert.equal(outcomes.length, 1);
    assert.equal(outcomes[0].ending, 'peer-closed');
    // The FIN came before the responses were answered: a half-close,
    // whatever the client's weight (a heavy one too keeps the passive
    // close, so it reads to its end of file); the client keeps the TIME-WAIT.
    // A light client's requests are answered without a look at the kernel
    // (its FIN gets the passive close whatever its timing), so its outcome
    // names the half-close only when Node read the FIN before the server
    // began to end the connection, else 'light': the same ending on the wire.
    if (weight === 'heavy') assert.equal(outcomes[0].peerFin, 'half-close');
    else assert.ok(['half-close', 'light'].includes(outcomes[0].peerFin), outcomes[0].peerFin);
    assert.equal(outcomes[0].timeWait, 'peer');
    assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
    assert.equal(await clientTimeWait(port), 1, 'the half-closing client keeps it');
  });
}

for (const [weight, threshold, ending, clientTw] of [
  ['light', 1000000, 'peer-closed', 10],
  ['heavy', 0, 'reset-after-peer-fin', 0],
]) {
  test(`curl Connection: close x10, every client ${weight}: ended on Node's own loop (${ending}), server TIME-WAIT 0, client ${clientTw}`, async (t) => {
    const { server, port, url } = await startServer({ attached: true, options: { heavyClientThreshold: threshold } });
    t.after(() => stop(server));
    const outcomes = [];
    server.on('farewell', (outcome) => outcomes.push(outcome));
    const bodies = await curlClose(url, 10);
    for (const body of bodies) assert.equal(body, BODY);
    await settled();
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes.map((o) => [o.ending, o.peerFin, o.onNodeLoop ?? false, o.elapsedMs]))}`);
    assert.equal(outcomes.length, 10);
    for (const outcome of outcomes) {
      assert.equal(outcome.ending, ending);
      assert.equal(outcome.peerFin, weight);
    }
    // curl reads the response and closes: most end without a hand-over (a
    // FIN that raced the response's flush is handed over, which is correct too).
    assert.ok(outcomes.some((o) => o.onNodeLoop === true), 'the fast path ran');
    assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
    assert.equal(await clientTimeWait(port), clientTw, 'client TIME-WAIT');
  });
}

const IGNORER = `
import socket, sys, time
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
time.sleep(0.3)  # the whole response is in our buffer; we neither read nor close
start = time.monotonic()
data = b""
try:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            end = "eof"
            break
        data += chunk
except ConnectionResetError:
    end = "reset"
print(end, data.count(b"HTTP/1.1 200 OK"), int(data.endswith(sys.argv[2].encode())), round(time.monotonic() - start, 1))
`;

test('a client that ignores the goodbye (keeps its connection after Connection: close) is reset after the grace, with its response whole', async (t) => {
  const { server, port } = await startServer({ attached: true, options: { grace: 1000 } });
  t.after(() => stop(server));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const out = (await python(IGNORER, [port, BODY.slice(-40)])).trim().split(' ');
  t.diagnostic(`client: ${out.join(' ')}`);
  // The response, whole, was in its receive buffer before the reset came.
  assert.deepEqual(out.slice(0, 3), ['reset', '1', '1']);
  await settled();
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0].ending, 'reset-after-grace');
  assert.equal(outcomes[0].timeWait, 'nobody');
  assert.ok(outcomes[0].graceMs >= 900, `grace ${outcomes[0].graceMs} ms`);
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT (a reset leaves none)');
});

test('silent clients of servers with different graces are each handed over when their own grace ends (one shared timer; a grace under a sweep has its own)', async (t) => {
  // 20 ms: a timer of its own; 300 and 700 ms: two queues of the shared sweep.
  const graces = [20, 300, 700];
  const servers = await Promise.all(graces.map((grace) => startServer({ attached: true, options: { grace } })));
  t.after(() => servers.forEach(({ server }) => stop(server)));
  const started = Date.now();
  const arrived = graces.map(() => null);
  const outcomes = graces.map(() => []);
  servers.forEach(({ server }, i) =>
    server.on('farewell', (outcome) => {
      outcomes[i].push(outcome);
      arrived[i] = Date.now() - started;
    })
  );
  const outs = await Promise.all(servers.map(({ port }) => python(IGNORER, [port, BODY.slice(-40)])));
  await settled();
  t.diagnostic(`outcomes after ${arrived.join(', ')} ms; clients: ${outs.map((o) => o.trim()).join(' / ')}`);
  for (const [i, grace] of graces.entries()) {
    assert.deepEqual(outs[i].trim().split(' ').slice(0, 3), ['reset', '1', '1'], `grace ${grace}: response whole, then the reset`);
    assert.equal(outcomes[i].length, 1);
    assert.equal(outcomes[i][0].ending, 'reset-after-grace');
    // The fast path's wait, then the hand-over's own grace: twice the grace.
    assert.ok(arrived[i] >= 2 * grace * 0.9, `grace ${grace}: ended after ${arrived[i]} ms`);
    assert.ok(arrived[i] < 2 * grace + 1000, `grace ${grace}: ended after ${arrived[i]} ms`);
    assert.equal(await serverTimeWait(servers[i].port), 0, 'server TIME-WAIT');
    assert.equal(await clientTimeWait(servers[i].port), 0, 'client TIME-WAIT');
  }
  assert.ok(arrived[0] < arrived[1] && arrived[1] < arrived[2], `in order of their graces: ${arrived.join(', ')}`);
});

const FLOODER = `
import socket, sys, time
port, body_end = int(sys.argv[1]), sys.argv[2].encode()
sock = socket.create_connection(("127.0.0.1", port), timeout=15)
sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while not data.endswith(body_end):
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
# The whole response is read; instead of closing, send 8 MiB more.
start = time.monotonic()
end = "sent"
try:
    for _ in range(128):
        sock.sendall(b"x" * 65536)
    while True:
        if not sock.recv(65536):
            end = "eof"
            break
except (ConnectionResetError, BrokenPipeError):
    end = "reset"
except socket.timeout:
    end = "timeout"
print(end, int(data.endswith(body_end)), round(time.monotonic() - start, 1))
`;

/** A net.Server attached to farewell that answers like startServer's (HTTP/1.1, BODY, Connection: close) and ends each socket after its answer. */
async function startNetServer(options) {
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`);
      socket.end();
    });
    socket.on('error', () => {});
  });
  farewell.attach(server, options);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

test('a client that floods after its response is cut by the drain limit, not kept for the grace (net.Server)', async (t) => {
  // A 10 s grace: the cut must come from the bytes read, long before it.
  const { server, port } = await startNetServer({ grace: 10000 });
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const [end, whole, seconds] = (await python(FLOODER, [port, BODY.slice(-40)], 30000)).trim().split(' ');
  t.diagnostic(`client: ${end} after ${seconds} s of flooding; outcomes ${JSON.stringify(outcomes.map((o) => [o.ending, o.bytesDrained]))}`);
  assert.equal(whole, '1', 'the response arrived whole first');
  assert.equal(end, 'reset');
  assert.ok(Number(seconds) < 5, `cut after ${seconds} s, not at the 10 s grace`);
  await settled();
  assert.deepEqual(outcomes.map((o) => o.ending), ['reset-on-drain-limit']);
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT (a reset leaves none)');
});

test("a client that floods after its response to an http.Server is cut by Node's parser at once", async (t) => {
  const { server, port } = await startServer({ attached: true, options: { grace: 10000 } });
  t.after(() => stop(server));
  const [end, whole, seconds] = (await python(FLOODER, [port, BODY.slice(-40)], 30000)).trim().split(' ');
  t.diagnostic(`client: ${end} after ${seconds} s of flooding`);
  assert.equal(whole, '1', 'the response arrived whole first');
  // Bytes that are no request: Node's http server destroys the socket.
  assert.equal(end, 'reset');
  assert.ok(Number(seconds) < 5, `cut after ${seconds} s, not at the 10 s grace`);
  await settled();
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT');
});

test('closeAllConnections() while the fast path waits for a silent client ends it at once, its response whole', async (t) => {
  const { server, port } = await startServer({ attached: true, options: { grace: 10000 } });
  t.after(() => stop(server));
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  // The ignorer reads nothing for 0.3 s; 0.1 s after its response went out
  // (not after the client was started: python may take longer than that to
  // connect on a busy machine), the server closes everything.
  server.on('request', (request, response) => {
    response.on('finish', () => setTimeout(() => server.closeAllConnections(), 100));
  });
  const out = (await python(IGNORER, [port, BODY.slice(-40)])).trim().split(' ');
  t.diagnostic(`client: ${out.join(' ')}; outcomes ${JSON.stringify(outcomes.map((o) => [o.ending, o.elapsedMs]))}`);
  assert.deepEqual(out.slice(0, 3), ['reset', '1', '1'], 'the whole response, then the reset');
  assert.ok(Number(out[3]) < 5, `ended after ${out[3]} s, not at the 10 s grace`);
  await settled();
  assert.equal(outcomes.length, 1);
  assert.equal(outcomes[0].timeWait, 'nobody');
  assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  assert.equal(await clientTimeWait(port), 0, 'client TIME-WAIT');
});
