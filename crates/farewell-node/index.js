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
/** Set on a socket whose client reads until end of file (HTTP/1.0 without keep-alive). */
const kEofOwed = Symbol('farewell.eofOwed');
const kAttached = Symbol('farewell.attached');

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
  return {
    policy: o.policy,
    grace: o.grace,
    peerTimeWait: o.peerTimeWait,
    graceEnd: o.graceEnd,
    heavyClientThreshold: o.heavyClientThreshold,
  };
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
 * the socket is destroyed without a FIN. Resolves with the outcome.
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
    if (socket instanceof tls.TLSSocket) {
      return reject(farewellError('EFAREWELL_TLS', 'TLS sockets are not supported yet (no close_notify without a FIN)'));
    }
    const bye = toBuffer(goodbye);
    if (bye === undefined) {
      const error = new TypeError('farewell: the goodbye is a Buffer, a string, a typed array or null');
      error.code = 'ERR_INVALID_ARG_TYPE';
      return reject(error);
    }
    const fd = socket._handle && socket._handle.fd;
    if (socket.destroyed || typeof fd !== 'number' || fd < 0) {
      return reject(farewellError('EFAREWELL_CLOSED', 'the socket is closed (no descriptor)'));
    }
    try {
      native.checkFd(fd);
    } catch (error) {
      return reject(fromNative(error));
    }
    socket[kState] = 'flushing';
    // Stop libuv reading: the teardown reads the peer's data and FIN itself.
    socket.pause();
    const limit = (options && options.flushTimeout) || 15000;
    whenFlushed(socket, limit, (error) => {
      if (error) return reject(error);
      const fd = socket._handle && socket._handle.fd;
      let outcome;
      try {
        outcome = native.closeFd(fd, bye, nativeOptions(options));
      } catch (error) {
        socket[kState] = undefined;
        return reject(fromNative(error));
      }
      socket[kState] = 'handed';
      // libuv closes its descriptor; the addon's duplicate keeps the socket
      // open, so nothing goes on the wire.
      (socket[kDestroy] || socket.destroy).call(socket);
      outcome.then(resolve, reject);
    });
  });
}

/** What attach() replaces on each connection's socket. */
function wrapSocket(server, socket, options) {
  const end = socket.end;
  const destroy = socket.destroy;
  socket[kDestroy] = destroy;

  const hand = (idle, callback) => {
    const chosen = idle
      ? { ...options, policy: 'peer-first', grace: 0 }
      : socket[kEofOwed]
        ? { ...options, grace: options.eofGrace ?? 5, graceEnd: 'fin' }
        : options;
    close(socket, null, chosen).then(
      (outcome) => {
        if (server.listenerCount('farewell') > 0) server.emit('farewell', outcome, socket);
        if (callback) callback();
      },
      (error) => {
        // Not ours to end (a Unix socket, reset by the peer, closed
        // meanwhile, …): Node's own way, which keeps its pending writes.
        socket[kState] = 'handed';
        if (!socket.destroyed) (idle ? destroy : end).call(socket);
        if (callback) callback();
      }
    );
  };

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
  if (server instanceof tls.Server) {
    throw farewellError('EFAREWELL_TLS', 'https/tls servers are not supported yet (no close_notify without a FIN)');
  }
  if (server[kAttached]) return server;
  server[kAttached] = true;
  const settings = { ...(options || {}) };
  server.prependListener('connection', (socket) => wrapSocket(server, socket, settings));
  // http.Server: an HTTP/1.0 client without keep-alive reads until end of
  // file, so it gets our FIN (5 ms after the response is ACKed), not a reset.
  server.prependListener('request', (request) => {
    if (request.httpVersion !== '1.0') return;
    const connection = String(request.headers.connection || '').toLowerCase();
    if (!connection.includes('keep-alive')) request.socket[kEofOwed] = true;
  });
  return server;
}

/** Counts of the teardowns of this process: started, inFlight, finished, byEnding. */
function stats() {
  return native.stats();
}

module.exports = { close, attach, stats };
