// A WebSocket through the `ws` npm package on an attached http.Server, with
// headless Chromium as the client: the echo, the close handshake (started
// by the page, or by the server), a clean close as Chromium reports it, and
// no server TIME-WAIT in the kernel's table afterwards.
//
// `ws` is where scripts/test installs it (target/test-clients/node_modules),
// or under $FAREWELL_NODE_MODULES.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import farewell from '../../index.js';
import { serverTimeWait, settled, stop } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.FAREWELL_NODE_MODULES || path.join(here, '../../../../target/test-clients/node_modules');
const { WebSocketServer } = createRequire(path.join(modules, 'noop.js'))('ws');

// The page: open, send a text, check its echo, then close (or ask the server
// to), and report how the close went; /hold keeps the page loading (and
// Chromium's --dump-dom waiting) until the report is in.
const PAGE = `<!doctype html><title>pending</title><body>open<script>
const ws = new WebSocket("ws://" + location.host + "/ws");
const text = "héllo wörld ".repeat(2000);
let echoed = false, start = 0;
ws.onopen = () => ws.send(text);
ws.onmessage = (e) => {
  echoed = e.data === text;
  start = performance.now();
  if ("MODE" === "client-closes") ws.close(1000, "done"); else ws.send("close-me");
};
ws.onclose = (e) => {
  const seconds = ((performance.now() - start) / 1000).toFixed(3);
  const line = "closed " + e.code + " " + (e.reason || "-") + " " + seconds + " clean=" + e.wasClean + " echoed=" + echoed;
  document.body.textContent = line;
  fetch("/report?" + encodeURIComponent(line));
};
</script><script src="/hold"></script></body>`;

async function wsServer(mode) {
  let report;
  const reported = new Promise((resolve) => (report = resolve));
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://x');
    if (url.pathname === '/page') {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      return response.end(PAGE.replace('MODE', mode));
    }
    if (url.pathname === '/report') {
      report(decodeURIComponent(url.search.slice(1)));
      return response.end();
    }
    if (url.pathname === '/hold') {
      const timer = setTimeout(() => response.end(), 20000);
      return reported.then(() => {
        clearTimeout(timer);
        response.writeHead(200, { 'Content-Type': 'text/javascript' });
        response.end();
      });
    }
    response.writeHead(404);
    response.end();
  });
  farewell.attach(server);
  const outcomes = [];
  server.on('farewell', (outcome) => outcomes.push(outcome));
  const wss = new WebSocketServer({ noServer: true });
  const sockets = [];
  server.on('upgrade', (request, socket, head) => {
    sockets.push(socket);
    wss.handleUpgrade(request, socket, head, (ws) => {
      ws.on('message', (data, binary) => {
        if (!binary && String(data) === 'close-me') ws.close(1001, 'bye');
        else ws.send(data, { binary });
      });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port, reported, outcomes, sockets };
}

function chromium(url, profile) {
  return spawn(
    'chromium',
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-extensions', `--user-data-dir=${profile}`, '--dump-dom', url],
    { stdio: ['ignore', 'pipe', 'ignore'] }
  );
}

for (const mode of ['client-closes', 'server-closes']) {
  test(`ws on an attached http.Server, Chromium, ${mode}: a clean close, 0 server TIME-WAIT`, async (t) => {
    const { server, port, reported, outcomes, sockets } = await wsServer(mode);
    t.after(() => stop(server));
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'farewell-node-chromium-'));
    const browser = chromium(`http://127.0.0.1:${port}/page`, profile);
    let dom = '';
    browser.stdout.on('data', (chunk) => (dom += chunk));
    const exited = new Promise((resolve) => browser.once('exit', resolve));
    t.after(() => {
      if (browser.exitCode === null) browser.kill('SIGKILL');
      fs.rmSync(profile, { recursive: true, force: true });
    });
    const line = await Promise.race([
      reported,
      new Promise((_, reject) => setTimeout(() => reject(new Error('the page reported no close within 40 s')), 40000)),
    ]);
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10000))]);
    t.diagnostic(`${mode}: ${line}; outcomes: ${JSON.stringify(outcomes.map((o) => o.ending))}`);
    const [, code, reason, seconds, clean, echoed] = line.split(' ');
    assert.equal(echoed, 'echoed=true');
    assert.equal(clean, 'clean=true', line);
    assert.equal(code, mode === 'client-closes' ? '1000' : '1001');
    assert.equal(reason, mode === 'client-closes' ? 'done' : 'bye');
    // Chromium waits for the server's TCP close (RFC 6455 §7.1.1): it came
    // promptly, not after Chromium's own close timeout.
    assert.ok(Number(seconds) < 1, `closed within ${seconds} s`);
    if (browser.exitCode !== null) assert.ok(dom.includes(line.split(' ').slice(0, 3).join(' ')), dom);
    // The WebSocket's TCP connection ended through farewell.
    assert.equal(sockets.length, 1);
    await settled();
    // The WebSocket's: our FIN once everything was ACKed (the others are the page's).
    assert.equal(outcomes.filter((o) => o.ending === 'fin-after-grace').length, 1, 'the WebSocket connection ended through farewell');
    assert.equal(await serverTimeWait(port), 0, 'server TIME-WAIT');
  });
}
