'use strict';
// farewell for Node.js: hand a net.Socket's descriptor to farewell's
// teardown (peer-first by default) instead of ending it with a FIN, so the
// server keeps no TIME-WAIT. See README.md beside this file.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');

/** Where the addon may be, first found wins: $FAREWELL_NODE_ADDON, else the workspace's target/. */
function addonCandidates() {
  const given = process.env.FAREWELL_NODE_ADDON;
  if (given) return [path.resolve(given)];
  const target = path.join(__dirname, '..', '..', 'target');
  return ['release', 'debug'].map((profile) => path.join(target, profile, 'libfarewell_node.so'));
}

function loadNative() {
  const candidates = addonCandidates();
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const module = { exports: {} };
    // A cdylib is named .so, which require() would read as JavaScript.
    process.dlopen(module, file);
    return module.exports;
  }
  throw new Error(
    `farewell: the native addon is not at ${candidates.join(' nor ')}; ` +
      'build it with `cargo build -p farewell-node`, or set FAREWELL_NODE_ADDON to its path'
  );
}

const native = loadNative();

/** Our state on a socket: 'flushing' (waiting for Node's writes), then 'handed'. */
const kState = Symbol('farewell.state');
/** The socket's own destroy(), where attach() replaced it. */
const kDestroy = Symbol('farewell.destroy');
/** The socket's own end(), where attach() replaced it. */
const kEnd = Symbol('farewell.end');
/** Set on a socket whose client reads until end of file (HTTP/1.0 without keep-alive). */
const kEofOwed = Symbol('farewell.eofOwed');
const kAttached = Symbol('farewell.attached');
/** Set on a socket whose client's FIN came before the server began to end it (a half-close). */
const kHalfClosed = Symbol('farewell.halfClosed');
/** Set on an http.Server's socket once a request found the client's FIN not yet in. */
const kAnswering = Symbol('farewell.answering');
/** While a fast-path socket waits for the client's FIN: ends the wait now (see awaitPeerFin). */
const kHurry = Symbol('farewell.hurry');

/**
 * What a fast-path socket may read while it waits for the client's FIN (a
 * client that keeps sending after its response): past it, the hand-over,
 * whose teardown drains with its drain limit and resets past that. The
 * core's `DEFAULT_DRAIN_LIMIT`.
 */
const WAIT_READ_LIMIT = 256 * 1024;

/** Peer-first's grace when `options.grace` is not given: the core's default (2 s). */
const DEFAULT_GRACE_MS = 2000;

const EMPTY = Buffer.alloc(0);

function farewellError(code, message) {
  const error = new Error(`farewell: ${message}`);
  error.code = code;
  return error;
}

/** The addon throws "EFAREWELL_X: message"; make that an Error with a `code`. */
function fromNative(error) {
  const match = /^(EFAREWELL_[A-Z_]+): (.*)$/s.exec(String(error && error.message));
  return match ? farewellError(match[1], match[2]) : error;
}

function toBuffer(goodbye) {
  if (goodbye == null) return null;
  if (Buffer.isBuffer(goodbye)) return goodbye;
  if (typeof goodbye === 'string') return Buffer.from(goodbye);
  if (ArrayBuffer.isView(goodbye)) {
    return Buffer.from(goodbye.buffer, goodbye.byteOffset, goodbye.byteLength);
  }
  if (goodbye instanceof ArrayBuffer) return Buffer.from(goodbye);
  return undefined;
}

function nativeOptions(options) {
  const o = options || {};
  const given = {
    policy: o.policy,
    grace: o.grace,
    peerTimeWait: o.peerTimeWait,
    graceEnd: o.graceEnd,
    heavyClientThreshold: o.heavyClientThreshold,
  };
  // None given (attach's usual case): nothing for the addon to read, field by field.
  return Object.values(given).every((v) => v === undefined) ? undefined : given;
}

/**
 * Calls done() once Node handed every byte written so far to the kernel
 * (`writableLength === 0`), done(error) if the socket is destroyed first.
 * After `limit` ms it goes on anyway: the policy's stall timeout deals with a
 * peer that does not read.
 */
function whenFlushed(socket, limit, done) {
  if (socket.writableLength === 0) return done();
  let finished = false;
  const finish = (error) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('close', onClose);
    done(error);
  };
  const onClose = () => finish(farewellError('EFAREWELL_CLOSED', 'the socket closed before its writes were flushed'));
  const timer = setTimeout(() => finish(), limit);
  socket.once('close', onClose);
  while (socket.writableCorked) socket.uncork();
  // Writes complete in order: this one's callback runs once every earlier
  // write was taken by the kernel.
  socket.write(EMPTY, () => finish());
}

/**
 * Ends `socket` with farewell's policy (peer-first by default): Node's
 * pending writes, then `goodbye`, then the teardown, on the addon's thread;
 * the socket is destroyed without a FIN. A `tls.TLSSocket` first sends its
 * close_notify (see `handOverTls`). Resolves with the outcome.
 */
function close(socket, goodbye, options) {
  return new Promise((resolve, reject) => {
    if (!(socket instanceof net.Socket)) {
      const error = new TypeError('farewell: close() takes a net.Socket');
      error.code = 'ERR_INVALID_ARG_TYPE';
      return reject(error);
    }
    if (socket[kState]) {
      return reject(farewellError('EFAREWELL_ALREADY', 'the socket was already handed to farewell'));
    }
    const bye = toBuffer(goodbye);
    if (bye === undefined) {
      const error = new TypeError('farewell: the goodbye is a Buffer, a string, a typed array or null');
      error.code = 'ERR_INVALID_ARG_TYPE';
      return reject(error);
    }
    const isTls = socket instanceof tls.TLSSocket;
    const fd = tcpFd(socket);
    if (socket.destroyed || typeof fd !== 'number' || fd < 0) {
      return reject(farewellError('EFAREWELL_CLOSED', 'the socket is closed (no descriptor)'));
    }
    if (isTls && !socket.encrypted) {
      return reject(farewellError('EFAREWELL_TLS', 'the TLS socket has no TLS layer'));
    }
    try {
      native.checkFd(fd);
    } catch (error) {
      return reject(fromNative(error));
    }
    handOver(socket, bye, options, true, (error, outcome) => (error ? reject(error) : resolve(outcome)));
  });
}

/**
 * The hand-over once `socket` was checked: stop reading, let Node's writes
 * reach the kernel, then the teardown. Calls `done(error)`, or `done(null,
 * outcome)` once it is over; with `report` false, `done(null)` as soon as
 * the socket is handed over, and no outcome crosses back to JavaScript (no
 * Promise, no object: what `attach` does when nobody listens for
 * 'farewell').
 */
function handOver(socket, bye, options, report, done) {
  const isTls = socket instanceof tls.TLSSocket;
  socket[kState] = 'flushing';
  // Stop libuv reading: the teardown reads the peer's data and FIN itself.
  socket.pause();
  // TLS: the goodbye goes through the TLS layer, encrypted, before close_notify.
  if (isTls && bye && bye.length > 0) socket.write(bye);
  const limit = (options && options.flushTimeout) || 15000;
  whenFlushed(socket, limit, (error) => {
    if (error) return done(error);
    if (isTls) return handOverTls(socket, options, report, done);
    // On the next tick, still before libuv runs again: http ends a socket
    // inside its last write's callback, and a socket destroyed there makes
    // Node's stream build an Error (with its stack) for nobody.
    process.nextTick(handOverNow, socket, bye, options, report, done);
  });
}

/** handOver()'s last step: the descriptor to the addon, then Node's handle closed. */
function handOverNow(socket, bye, options, report, done) {
  if (socket.destroyed) return done(farewellError('EFAREWELL_CLOSED', 'the socket was destroyed meanwhile'));
  let outcome;
  try {
    outcome = native.closeFd(tcpFd(socket), bye, nativeOptions(options), report);
  } catch (error) {
    socket[kState] = undefined;
    return done(fromNative(error));
  }
  socket[kState] = 'handed';
  // libuv closes its descriptor; the addon's duplicate keeps the socket
  // open, so nothing goes on the wire.
  (socket[kDestroy] || socket.destroy).call(socket);
  if (report) outcome.then((result) => done(null, result), done);
  else done(null);
}

/** The TCP descriptor under `socket` (under its TLS layer for a TLSSocket), if any. */
function tcpFd(socket) {
  const handle = socket._handle;
  if (!handle) return undefined;
  return socket instanceof tls.TLSSocket ? handle._parent && handle._parent.fd : handle.fd;
}

/**
 * A TLSSocket's close_notify without a FIN, then the hand-over. Node's
 * `end()` calls its TLS handle's `shutdown()`, which (in C++, synchronously)
 * has OpenSSL make close_notify, writes it to the TCP handle, and asks libuv
 * to shut the TCP socket down; libuv defers that shutdown(2) to its next
 * turn (`uv__drain`). Here `shutdown()` is wrapped for this one call: once it
 * returns, if libuv's write queue is empty (close_notify is in the kernel),
 * the descriptor is duplicated for the teardown and the socket destroyed
 * before libuv turns again (process.nextTick), so the deferred shutdown is
 * cancelled with the handle and no FIN is sent. If close_notify is still
 * queued in libuv, the hand-over is refused and Node's own ending (FIN)
 * goes on: nothing is lost.
 */
function handOverTls(socket, options, report, done) {
  const handle = socket._handle;
  const tcp = handle && handle._parent;
  if (!tcp || typeof handle.shutdown !== 'function') {
    socket[kState] = undefined;
    return done(farewellError('EFAREWELL_CLOSED', 'the TLS socket lost its handle'));
  }
  const shutdown = handle.shutdown;
  handle.shutdown = function farewellShutdown(request) {
    delete handle.shutdown;
    const status = shutdown.call(this, request);
    if (status !== 0 || tcp.writeQueueSize !== 0) {
      socket[kState] = 'handed';
      socket.resume();
      done(farewellError('EFAREWELL_TLS', 'close_notify was not taken by the kernel at once; Node ends the connection itself (FIN)'));
      return status;
    }
    let outcome;
    try {
      outcome = native.closeFd(tcp.fd, null, nativeOptions(options), report);
    } catch (error) {
      // Reset by the peer meanwhile, say: Node's ending goes on (reading
      // again lets it see the reset and destroy the socket).
      socket[kState] = 'handed';
      socket.resume();
      done(fromNative(error));
      return status;
    }
    socket[kState] = 'handed';
    process.nextTick(() => (socket[kDestroy] || socket.destroy).call(socket));
    if (report) outcome.then((result) => done(null, result), done);
    else done(null);
    return status;
  };
  (socket[kEnd] || socket.end).call(socket);
  // end() calls shutdown() at once when nothing is pending; if it has not,
  // the flush above left something behind: put it back, Node ends it.
  if (Object.prototype.hasOwnProperty.call(handle, 'shutdown') && socket[kState] === 'flushing') {
    process.nextTick(() => {
      if (socket[kState] !== 'flushing') return;
      delete handle.shutdown;
      socket[kState] = 'handed';
      socket.resume();
      done(farewellError('EFAREWELL_TLS', 'the TLS socket did not shut down at once; Node ends the connection itself (FIN)'));
    });
  }
}

/**
 * Whether `options` leave a response's ending to the fast path: peer-first
 * with the heavy-client choice (`auto`) and a reset at the grace's end, the
 * defaults.
 */
function fastPathFits(options) {
  return (
    (options.policy === undefined || options.policy === 'peer-first') &&
    (options.peerTimeWait === undefined || options.peerTimeWait === 'auto') &&
    (options.graceEnd === undefined || options.graceEnd === 'reset')
  );
}

/**
 * The fast path of a response's ending (`Connection: close`, `end()`): most
 * clients close right after the response, so the socket stays on Node's
 * loop, reading, without a FIN from us. When the client's FIN comes
 * (`'end'`) and the addon finds everything ACKed (one `SIOCOUTQ`), the
 * connection ends there: `destroy()` for a light client (the passive close:
 * it keeps the TIME-WAIT) or `resetAndDestroy()` for a heavy one (nobody
 * keeps it), the core's choice from the table of recent endings the
 * hand-overs share. No descriptor is duplicated, no thread woken. A client
 * still silent after the grace (2 s by default), or whose FIN came while
 * bytes were unACKed, is handed over as before: the policy's delivery watch,
 * grace and reset run on the addon's thread.
 */
function awaitPeerFin(server, socket, options, report, refused, callback) {
  const destroy = socket[kDestroy];
  const started = report ? Date.now() : 0;
  socket[kState] = 'flushing';
  const handOverAfterAll = (chosen = options) => {
    socket[kState] = undefined;
    handOver(socket, null, chosen, report, (error, outcome) => {
      if (error) return refused();
      if (report) server.emit('farewell', outcome, socket);
      if (callback) callback();
    });
  };
  whenFlushed(socket, options.flushTimeout || 15000, (error) => {
    if (error) return refused();
    const fd = tcpFd(socket);
    if (socket.destroyed || typeof fd !== 'number' || fd < 0) return refused();
    // The client's FIN came before a response was answered (a half-close:
    // it still reads and is owed an end of file): the hand-over's passive
    // close, once everything is delivered.
    let inFlight;
    try {
      inFlight = native.waitStart(fd);
    } catch {
      return handOverAfterAll();
    }
    const peerIp = String(socket.remoteAddress);
    // The FIN is in already: before the server began to end the connection
    // (a half-close), or after (Node saw it: 'end'; or the kernel has it and
    // an http.Server checked before answering: the client read and closed).
    // On the next tick, as handOver() does: a socket destroyed inside its
    // last write's callback makes Node's stream build an Error for nobody.
    if (socket[kHalfClosed] || socket.readableEnded || (inFlight < 0 && socket[kAnswering])) {
      socket[kState] = 'waiting';
      return process.nextTick(endAfterPeerFin);
    }
    // Not an http.Server (nobody checked when the FIN came): as the core
    // does with CLOSE-WAIT at the start, a half-close.
    if (inFlight < 0) return handOverAfterAll();
    socket[kState] = 'waiting';
    let timer;
    let read = 0;
    const stopWaiting = () => {
      clearTimeout(timer);
      socket[kHurry] = undefined;
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onClose);
      socket.removeListener('data', onData);
    };
    const onClose = () => stopWaiting();
    // A client that keeps sending instead of closing: bounded by the
    // hand-over's drain limit, not by the grace.
    const onData = (chunk) => {
      read += chunk.length;
      if (read <= WAIT_READ_LIMIT) return;
      stopWaiting();
      socket.pause();
      handOverAfterAll();
    };
    // destroy() meanwhile (closeAllConnections(), server.close() with a
    // keep-alive timeout, the application): what an idle connection gets,
    // at once, instead of the rest of the grace.
    socket[kHurry] = () => {
      stopWaiting();
      socket.pause();
      handOverAfterAll({ ...options, policy: 'peer-first', grace: 0 });
    };
    const onEnd = () => {
      stopWaiting();
      endAfterPeerFin();
    };
    function endAfterPeerFin() {
      if (socket.destroyed) {
        // Reset by the client meanwhile: Node finished it.
        socket[kState] = 'handed';
        if (callback) callback();
        return;
      }
      let kind = 0;
      try {
        kind = native.afterPeerFin(fd, peerIp, options.heavyClientThreshold, socket[kHalfClosed] === true);
      } catch {
        kind = 0;
      }
      if (kind === 0) {
        socket.pause();
        return handOverAfterAll();
      }
      socket[kState] = 'handed';
      if (kind === 2) socket.resetAndDestroy();
      else destroy.call(socket);
      if (report) server.emit('farewell', fastOutcome(socket, kind, Math.max(inFlight, 0), started), socket);
      if (callback) callback();
    }
    timer = setTimeout(() => {
      stopWaiting();
      socket.pause();
      handOverAfterAll();
    }, options.grace ?? DEFAULT_GRACE_MS);
    socket.once('end', onEnd);
    socket.once('close', onClose);
    socket.on('data', onData);
    socket.resume();
  });
}

/**
 * The outcome of a fast-path ending, with the fields of the addon's (the
 * core's `Outcome`): the response was flushed, the client's FIN came with
 * everything ACKed (`bytesDelivered`: what was in flight when the wait
 * began); the wait is `deliverMs` (the fast path does not tell delivery and
 * grace apart: `graceMs` 0).
 */
function fastOutcome(socket, kind, inFlight, started) {
  const elapsedMs = Date.now() - started;
  const local = socket.localAddress ? hostPort(socket.localAddress, socket.localPort) : null;
  const peer = socket.remoteAddress ? hostPort(socket.remoteAddress, socket.remotePort) : null;
  return {
    policy: 'peer-first',
    ending: kind === 2 ? 'reset-after-peer-fin' : 'peer-closed',
    timeWait: kind === 2 ? 'nobody' : 'peer',
    goodbye: 'none-sent',
    goodbyeWritten: 0,
    bytesDelivered: inFlight,
    bytesDrained: 0,
    unackedAtClose: 0,
    deliverMs: elapsedMs,
    graceMs: 0,
    elapsedMs,
    peerFin: ['light', 'heavy', 'half-close'][kind - 1],
    local,
    peer,
    onNodeLoop: true,
  };
}

function hostPort(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** What attach() replaces on each connection's socket. */
function wrapSocket(server, socket, options) {
  const end = socket.end;
  const destroy = socket.destroy;
  socket[kDestroy] = destroy;
  socket[kEnd] = end;

  const hand = (idle, callback) => {
    const chosen = idle
      ? { ...options, policy: 'peer-first', grace: 0 }
      : socket[kEofOwed]
        ? { ...options, grace: options.eofGrace ?? 5, graceEnd: 'fin' }
        : options;
    const refused = () => {
      // Not ours to end (a Unix socket, reset by the peer, closed
      // meanwhile, …): Node's own way, which keeps its pending writes.
      // Reading again lets Node see the peer's end or reset and finish
      // the socket itself (it was paused for the hand-over).
      socket[kState] = 'handed';
      if (!socket.destroyed) {
        socket.resume();
        (idle ? destroy : end).call(socket);
      }
      if (callback) callback();
    };
    const fd = tcpFd(socket);
    if (typeof fd !== 'number' || fd < 0 || (socket instanceof tls.TLSSocket && !socket.encrypted)) {
      return refused();
    }
    // The outcome crosses back to JavaScript only for a 'farewell' listener.
    const report = server.listenerCount('farewell') > 0;
    if (!idle && !socket[kEofOwed] && !(socket instanceof tls.TLSSocket) && fastPathFits(options)) {
      return awaitPeerFin(server, socket, options, report, refused, callback);
    }
    handOver(socket, null, chosen, report, (error, outcome) => {
      if (error) return refused();
      if (report) server.emit('farewell', outcome, socket);
      if (callback) callback();
    });
  };

  // A FIN before the server began to end the connection is a half-close
  // (the client may still read); after, the client read and closed.
  socket.on('end', () => {
    if (!socket[kState]) socket[kHalfClosed] = true;
  });

  socket.end = function farewellEnd(data, encoding, callback) {
    if (typeof data === 'function') {
      callback = data;
      data = undefined;
    } else if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (this[kState] || this.destroyed) {
      if (callback) process.nextTick(callback);
      return this;
    }
    if (data != null) this.write(data, encoding);
    hand(false, callback);
    return this;
  };
  socket.destroySoon = function farewellDestroySoon() {
    if (!this[kState] && !this.destroyed) hand(false);
  };
  socket.destroy = function farewellDestroy(error) {
    if (error || this.destroyed || !this._handle || this[kState] === 'handed') {
      return destroy.call(this, error);
    }
    if (!this[kState]) hand(true);
    else if (this[kHurry]) this[kHurry]();
    return this;
  };
}

/**
 * Makes every connection `server` ends (a `Connection: close` response,
 * `socket.end()`, a keep-alive timeout, `closeIdleConnections()`,
 * `server.close()`) end with farewell instead of a FIN. Returns `server`.
 */
function attach(server, options) {
  if (!(server instanceof net.Server)) {
    const error = new TypeError('farewell: attach() takes a net.Server or http.Server');
    error.code = 'ERR_INVALID_ARG_TYPE';
    throw error;
  }
  if (server[kAttached]) return server;
  server[kAttached] = true;
  const settings = { ...(options || {}) };
  // A tls.Server (https.Server) hands its TLSSockets to 'secureConnection';
  // its 'connection' sockets are the TCP ones underneath, which it ends itself.
  const event = server instanceof tls.Server ? 'secureConnection' : 'connection';
  server.prependListener(event, (socket) => wrapSocket(server, socket, settings));
  // http.Server: an HTTP/1.0 client without keep-alive reads until end of
  // file, so it gets our FIN (5 ms after the response is ACKed), not a reset.
  server.prependListener('request', (request) => {
    // Before the answer: is the client's FIN in already (sent with its
    // request: a half-close, owed the passive close)? One getsockopt, as
    // farewell-http does before a response's first write.
    const socket = request.socket;
    if (!socket[kHalfClosed] && !(socket instanceof tls.TLSSocket)) {
      const fd = tcpFd(socket);
      let finIn = true;
      try {
        finIn = typeof fd !== 'number' || fd < 0 || native.peerFinIn(fd);
      } catch {
        finIn = true;
      }
      if (finIn) socket[kHalfClosed] = true;
      else socket[kAnswering] = true;
    }
    if (request.httpVersion !== '1.0') return;
    const connection = String(request.headers.connection || '').toLowerCase();
    if (!connection.includes('keep-alive')) request.socket[kEofOwed] = true;
  });
  // An upgraded connection (a WebSocket): RFC 6455 §7.1.1 has the server
  // close TCP first after the close handshake, and clients (Chromium) wait
  // for it, so it gets our FIN once everything is ACKed, as farewell-http
  // does. Seen on the way to the 'upgrade' listeners, not as one: a listener
  // of our own would make Node hand over upgrades nobody handles.
  const emit = server.emit;
  server.emit = function farewellEmit(event, request, socket) {
    if (event === 'upgrade' && socket instanceof net.Socket) socket[kEofOwed] = true;
    return emit.apply(this, arguments);
  };
  return server;
}

/** Counts of the teardowns of this process: started, inFlight, finished, byEnding. */
function stats() {
  return native.stats();
}

/**
 * Resolves once no teardown of the addon is in flight, for a process about
 * to exit (the addon's thread does not keep Node alive: a teardown still
 * running at exit would be cut without its policy). At `deadlineMs` (default
 * 10 000) it hurries them: each ends at once (`reset-at-deadline`, after one
 * probe of whether its last bytes were ACKed), as does every later teardown
 * of the process, and it resolves when they have ended (at most a second
 * more). Resolves with the number hurried.
 */
async function drain(deadlineMs = 10000) {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 10));
  const deadline = Date.now() + deadlineMs;
  while (native.stats().inFlight > 0 && Date.now() < deadline) await pause();
  const hurried = native.stats().inFlight;
  if (hurried === 0) return 0;
  native.hurry();
  const bound = Date.now() + 1000;
  while (native.stats().inFlight > 0 && Date.now() < bound) await pause();
  return hurried;
}

module.exports = { close, attach, stats, drain };
