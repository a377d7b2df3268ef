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

/**
 * Our state on a socket: 'flushing' (waiting for Node's writes), 'waiting'
 * (attach's fast path: for the client's FIN), 'ending' (its FIN is in: the
 * ending is on the next tick), then 'handed'.
 */
const kState = Symbol('farewell.state');
/** The socket's own destroy(), where attach() replaced one that was not Node's own. */
const kDestroy = Symbol('farewell.destroy');
/** The socket's own end(), where attach() replaced one that was not Node's own. */
const kEnd = Symbol('farewell.end');
/** Set on a socket whose client reads until end of file (HTTP/1.0 without keep-alive). */
const kEofOwed = Symbol('farewell.eofOwed');
const kAttached = Symbol('farewell.attached');
/** Set on a socket whose client's FIN came before the server began to end it (a half-close). */
const kHalfClosed = Symbol('farewell.halfClosed');
/** Set on an http.Server's socket once a request found the client's FIN not yet in. */
const kAnswering = Symbol('farewell.answering');
/** Whether this connection looks, before each request, at the client's FIN (see onRequest). */
const kCheckFins = Symbol('farewell.checkFins');
/** A request was answered without that look: the FIN's timing is unknown. */
const kUnchecked = Symbol('farewell.unchecked');
/** The client's address, once asked for (Node caches it: finEnd needs no getpeername). */
const kPeer = Symbol('farewell.peer');
/** attach()'s options, on the server. */
const kSettings = Symbol('farewell.settings');
/** On an attached server: whether its options leave responses' endings to the fast path. */
const kFastPath = Symbol('farewell.fastPath');
/** On a socket whose `server` is not the attached server (one emitted by hand). */
const kServer = Symbol('farewell.server');
/** On a fast-path socket's handle while it waits for the client's FIN: the Wait. */
const kWait = Symbol('farewell.wait');

const SOCKET = net.Socket.prototype;
/** Node's own onread of a TCP handle (`onStreamRead`), taken from the first socket that waits. */
let nodeOnRead;

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
  nodeDestroy(socket);
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
    process.nextTick(nodeDestroy, socket);
    if (report) outcome.then((result) => done(null, result), done);
    else done(null);
    return status;
  };
  nodeEnd(socket);
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

/** The server that `attach` wrapped `socket` for. */
function serverOf(socket) {
  return socket[kServer] || socket.server;
}

/** The socket's own destroy(), as it was before attach() replaced it. */
function nodeDestroy(socket, error) {
  const destroy = socket[kDestroy] || socket.destroy;
  return (destroy === farewellDestroy ? SOCKET.destroy : destroy).call(socket, error);
}

/** The socket's own end(), as it was before attach() replaced it. */
function nodeEnd(socket) {
  const end = socket[kEnd] || socket.end;
  return (end === farewellEnd ? SOCKET.end : end).call(socket);
}

/**
 * A fast-path socket's wait for its client's FIN, one object per
 * connection: no closure, listener or Promise is made for it (the wait's
 * functions are shared and take this).
 */
class Wait {
  constructor(socket, server, options, report, callback) {
    this.socket = socket;
    this.server = server;
    this.options = options;
    this.report = report;
    this.callback = callback;
    this.fd = -1;
    this.halfClosed = false;
    /** What the addon's finEnd() said, once it was asked. */
    this.kind = -1;
    this.inFlight = 0;
    this.started = report ? Date.now() : 0;
    /** A timer of its own, only for a grace shorter than a sweep (see armGrace). */
    this.timer = null;
    /** When the grace ends (Date.now() ms), for the shared sweep. */
    this.deadline = 0;
    /** The grace's queue while the wait is in it, and its neighbours there. */
    this.queue = null;
    this.prev = null;
    this.next = null;
    /** The socket's bytesRead when the wait began (the drain limit counts from there). */
    this.readAt = 0;
  }
}

/**
 * The fast path of a response's ending (`Connection: close`, `end()`): most
 * clients close right after the response, so the socket stays on Node's
 * loop, reading, without a FIN from us. When the client's FIN comes (Node
 * reads end of file) and the addon finds everything ACKed, the connection
 * ends there: `destroy()`, a passive close for a light client (it keeps the
 * TIME-WAIT), a reset for a heavy one (nobody keeps it; the addon set
 * `SO_LINGER {on, 0}` in the same call that chose, from the table of recent
 * endings the hand-overs share). No descriptor is duplicated, no thread
 * woken. A client still silent after the grace (2 s by default), or whose
 * FIN came while bytes were unACKed, is handed over as before: the policy's
 * delivery watch, grace and reset run on the addon's thread.
 */
function awaitPeerFin(socket, server, options, report, callback) {
  const wait = new Wait(socket, server, options, report, callback);
  waits.add(wait);
  socket[kState] = 'flushing';
  if (socket.writableLength === 0) return startWait(wait);
  whenFlushed(socket, options.flushTimeout || 15000, (error) => {
    if (error) {
      waits.delete(wait);
      return refuse(socket, false, callback);
    }
    startWait(wait);
  });
}

/** awaitPeerFin() once Node flushed the response. */
function startWait(wait) {
  const socket = wait.socket;
  const fd = tcpFd(socket);
  if (socket.destroyed || typeof fd !== 'number' || fd < 0) {
    waits.delete(wait);
    return refuse(socket, false, wait.callback);
  }
  wait.fd = fd;
  // drain()'s deadline passed: no wait on Node's loop, what an idle
  // connection gets (the hand-over, hurried like every teardown then).
  if (drainHurried) return hurry(wait);
  // The client's FIN came before a response was answered (a half-close: it
  // still reads and is owed an end of file): the passive close.
  wait.halfClosed = socket[kHalfClosed] === true;
  // Or Node read it already, after the server began to end the connection
  // ('end' emitted, or about to be): the client read and closed.
  if (wait.halfClosed || socket.readableEnded || socket._readableState.ended) return endSoon(wait);
  if (wait.report || !socket[kAnswering]) {
    // Where the wait starts (what the outcome calls bytesDelivered), and
    // whether the FIN is in already.
    try {
      wait.inFlight = native.waitStart(fd);
    } catch {
      return handOverAfterAll(wait);
    }
    if (wait.inFlight < 0) {
      wait.inFlight = 0;
      // Not an http.Server (nobody checked when the FIN came): as the core
      // does with CLOSE-WAIT at the start, a half-close.
      if (!socket[kAnswering]) return handOverAfterAll(wait);
      return endSoon(wait);
    }
  }
  // An http.Server checked before answering that the FIN was not in; if it
  // came since, Node reads it at once (onReadWhileWaiting): no look at the
  // kernel here, which over a real path would find nothing most times.
  const handle = socket._handle;
  if (nodeOnRead === undefined) nodeOnRead = handle.onread;
  if (handle.onread !== nodeOnRead) return handOverAfterAll(wait);
  wait.readAt = handle.bytesRead;
  // The client's FIN reaches us as Node's own end of file, one level below
  // the stream: the handle's onread (see onReadWhileWaiting).
  handle[kWait] = wait;
  handle.onread = onReadWhileWaiting;
  socket[kState] = 'waiting';
  armGrace(wait, wait.options.grace ?? DEFAULT_GRACE_MS);
  socket.resume();
}

/**
 * The grace's end for the waits: one shared timer, every SWEEP_MS while
 * some wait is queued, and a queue per grace length (a linked list, oldest
 * first: their deadlines come in order), instead of a Node timer per
 * connection. Most waits end within a round trip, which with a timer each
 * had Node make and drop its timer list for that length again and again
 * (the list, its place in the priority queue, libuv's timer, the loop's
 * ref). A wait leaves its queue when it stops (stopWaiting), so nothing is
 * kept for an ended connection; the grace ends up to SWEEP_MS late. A grace
 * shorter than a sweep gets a timer of its own.
 */
const SWEEP_MS = 50;
/** grace ms -> { head, tail } of the waits with that grace, oldest first. */
const graceQueues = new Map();
let sweepTimer = null;

function armGrace(wait, grace) {
  if (!(grace >= SWEEP_MS)) {
    wait.timer = setTimeout(graceOver, grace, wait);
    return;
  }
  wait.deadline = Date.now() + grace;
  let queue = graceQueues.get(grace);
  if (queue === undefined) {
    queue = { head: null, tail: null };
    graceQueues.set(grace, queue);
  }
  wait.queue = queue;
  wait.prev = queue.tail;
  if (queue.tail === null) queue.head = wait;
  else queue.tail.next = wait;
  queue.tail = wait;
  if (sweepTimer === null) {
    sweepTimer = setInterval(sweepGraces, SWEEP_MS);
    // The waiting sockets keep Node's loop alive; this timer need not.
    sweepTimer.unref();
  }
}

/** Takes `wait` out of its grace's queue, if it is in one. */
function unqueue(wait) {
  const queue = wait.queue;
  if (queue === null) return;
  if (wait.prev === null) queue.head = wait.next;
  else wait.prev.next = wait.next;
  if (wait.next === null) queue.tail = wait.prev;
  else wait.next.prev = wait.prev;
  wait.queue = wait.prev = wait.next = null;
}

/** The shared timer: the waits whose grace is over are handed over; stops once no wait is queued. */
function sweepGraces() {
  const now = Date.now();
  let queued = false;
  for (const queue of graceQueues.values()) {
    while (queue.head !== null && queue.head.deadline <= now) {
      const wait = queue.head;
      unqueue(wait);
      graceOver(wait);
    }
    if (queue.head !== null) queued = true;
  }
  if (!queued) {
    clearInterval(sweepTimer);
    sweepTimer = null;
  }
}

/**
 * The fast path's waits of this process not yet ended on Node's loop or
 * handed over: drain() awaits them too (a wait holds only its place in its
 * grace's queue, whose timer does not keep Node alive, and at the grace's
 * end it is handed over to the addon's thread, which does not either).
 * Each leaves the set when it ends or is handed over.
 */
const waits = new Set();
/** drain()'s deadline passed: every wait, and every later one, is handed over at once. */
let drainHurried = false;

/** Whether `wait` is still on Node's loop (flushing, waiting or about to end there). */
function waitPending(wait) {
  const state = wait.socket[kState];
  return state === 'flushing' || state === 'waiting' || state === 'ending';
}

/** The waits still pending (any left behind by a path that ended one are forgotten). */
function pendingWaits() {
  for (const wait of waits) if (!waitPending(wait)) waits.delete(wait);
  return waits.size;
}

/**
 * The handle's onread while a fast-path socket waits for the client's FIN,
 * in place of Node's (`onStreamRead`, which would push the end of file
 * through the stream: `'end'` on the next tick, its listeners, then ours).
 * Data (a `net.Server`'s socket; an `http.Server`'s parser takes it before
 * this) goes to Node's, bounded by the drain limit. Anything else is an
 * end of file, an error, or nothing (libuv's EAGAIN): the addon's one look
 * at the kernel tells, and ends the connection if the FIN is in.
 */
function onReadWhileWaiting(arrayBuffer) {
  const wait = this[kWait];
  const socket = wait.socket;
  if (arrayBuffer !== undefined) {
    const result = nodeOnRead.call(this, arrayBuffer);
    // A client that keeps sending instead of closing: bounded by the
    // hand-over's drain limit, not by the grace.
    if (socket[kState] === 'waiting' && this.bytesRead - wait.readAt > WAIT_READ_LIMIT) {
      stopWaiting(wait);
      socket.pause();
      handOverAfterAll(wait);
    }
    return result;
  }
  const kind = askFinEnd(wait, -2);
  // Still open: nothing was read (Node's own returns at once).
  if (kind === -1) return nodeOnRead.call(this, arrayBuffer);
  stopWaiting(wait);
  wait.kind = kind;
  if (kind === -2) {
    // Not a FIN (reset by the client, say): Node's own reading finishes it.
    waits.delete(wait);
    socket[kState] = 'handed';
    nodeOnRead.call(this, arrayBuffer);
    if (!socket.destroyed) nodeDestroy(socket);
    if (wait.callback) wait.callback();
    return;
  }
  endAfterPeerFin(wait);
}

/** The addon's finEnd() for this wait (see its docs in src/lib.rs); `failed` if it throws. */
function askFinEnd(wait, failed) {
  try {
    return native.finEnd(
      wait.fd,
      wait.halfClosed,
      wait.options.heavyClientThreshold,
      wait.socket[kUnchecked] === true,
      wait.socket[kPeer],
    );
  } catch {
    return failed;
  }
}

/** Ends the wait's timer and hands Node's onread back. */
function stopWaiting(wait) {
  if (wait.timer !== null) clearTimeout(wait.timer);
  unqueue(wait);
  const handle = wait.socket._handle;
  if (handle && handle[kWait] === wait) {
    handle[kWait] = undefined;
    handle.onread = nodeOnRead;
  }
}

/** The grace is over and the client is still silent: the hand-over. */
function graceOver(wait) {
  if (wait.socket[kState] !== 'waiting') return;
  stopWaiting(wait);
  wait.socket.pause();
  handOverAfterAll(wait);
}

/**
 * destroy() while the socket waits (closeAllConnections(), server.close()
 * with a keep-alive timeout, the application): what an idle connection
 * gets, at once, instead of the rest of the grace.
 */
function hurry(wait) {
  stopWaiting(wait);
  wait.socket.pause();
  handOverAfterAll(wait, { ...wait.options, policy: 'peer-first', grace: 0 });
}

/** The hand-over to the addon's thread, for a socket the fast path does not end. */
function handOverAfterAll(wait, chosen = wait.options) {
  waits.delete(wait);
  const socket = wait.socket;
  socket[kState] = undefined;
  handOver(socket, null, chosen, wait.report, (error, outcome) => {
    if (error) return refuse(socket, false, wait.callback);
    if (wait.report) wait.server.emit('farewell', outcome, socket);
    if (wait.callback) wait.callback();
  });
}

/**
 * The client's FIN is in already: its ending on the next tick, still before
 * libuv runs again (http ends a socket inside its last write's callback,
 * and a socket destroyed there makes Node's stream build an Error, with its
 * stack, for nobody).
 */
function endSoon(wait) {
  wait.socket[kState] = 'ending';
  process.nextTick(endAfterPeerFin, wait);
}

/** The ending once the client's FIN came: the addon's choice (if not made yet), then destroy(). */
function endAfterPeerFin(wait) {
  waits.delete(wait);
  const socket = wait.socket;
  if (socket.destroyed) {
    // Reset by the client meanwhile: Node finished it.
    socket[kState] = 'handed';
    if (wait.callback) wait.callback();
    return;
  }
  const kind = wait.kind === -1 ? askFinEnd(wait, 0) : wait.kind;
  if (kind <= 0) {
    socket.pause();
    return handOverAfterAll(wait);
  }
  socket[kState] = 'handed';
  // A heavy client (2): the addon set SO_LINGER {on, 0}, so this close resets.
  nodeDestroy(socket);
  if (wait.report) {
    wait.server.emit('farewell', fastOutcome(socket, kind, wait.inFlight, wait.started), socket);
  }
  if (wait.callback) wait.callback();
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

/**
 * What attach() replaces on each new connection's socket, before the
 * server's 'connection' listeners see it: functions shared by every socket
 * (no closure per connection).
 */
function onConnection(server, socket) {
  if (!(socket instanceof net.Socket)) return;
  if (socket.server !== server) socket[kServer] = server;
  if (socket.end !== SOCKET.end) socket[kEnd] = socket.end;
  if (socket.destroy !== SOCKET.destroy) socket[kDestroy] = socket.destroy;
  socket.end = farewellEnd;
  socket.destroySoon = farewellDestroySoon;
  socket.destroy = farewellDestroy;
}

function farewellEnd(data, encoding, callback) {
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
  hand(this, false, callback);
  return this;
}

function farewellDestroySoon() {
  if (!this[kState] && !this.destroyed) hand(this, false);
}

function farewellDestroy(error) {
  const state = this[kState];
  if (state === 'waiting') {
    const wait = this._handle && this._handle[kWait];
    if (wait && !error && !this.destroyed) {
      hurry(wait);
      return this;
    }
    if (wait) stopWaiting(wait);
    this[kState] = 'handed';
    return nodeDestroy(this, error);
  }
  if (error || this.destroyed || !this._handle || state === 'handed') {
    return nodeDestroy(this, error);
  }
  if (!state) hand(this, true);
  return this;
}

/**
 * Not ours to end (a Unix socket, reset by the peer, closed meanwhile, …):
 * Node's own way, which keeps its pending writes. Reading again lets Node
 * see the peer's end or reset and finish the socket itself (it was paused
 * for the hand-over).
 */
function refuse(socket, idle, callback) {
  socket[kState] = 'handed';
  if (!socket.destroyed) {
    socket.resume();
    if (idle) nodeDestroy(socket);
    else nodeEnd(socket);
  }
  if (callback) callback();
}

/** The server ends `socket` (idle: destroy() of a connection between requests). */
function hand(socket, idle, callback) {
  const server = serverOf(socket);
  const options = server[kSettings];
  // A FIN Node read before the server began to end the connection: a
  // half-close (the client may still read).
  if (socket.readableEnded) socket[kHalfClosed] = true;
  const fd = tcpFd(socket);
  const isTls = socket instanceof tls.TLSSocket;
  if (typeof fd !== 'number' || fd < 0 || (isTls && !socket.encrypted)) {
    return refuse(socket, idle, callback);
  }
  // The outcome crosses back to JavaScript only for a 'farewell' listener.
  const report = server.listenerCount('farewell') > 0;
  if (!idle && !socket[kEofOwed] && !isTls && server[kFastPath]) {
    return awaitPeerFin(socket, server, options, report, callback);
  }
  const chosen = idle
    ? { ...options, policy: 'peer-first', grace: 0 }
    : socket[kEofOwed]
      ? { ...options, grace: options.eofGrace ?? 5, graceEnd: 'fin' }
      : options;
  handOver(socket, null, chosen, report, (error, outcome) => {
    if (error) return refuse(socket, idle, callback);
    if (report) server.emit('farewell', outcome, socket);
    if (callback) callback();
  });
}

/**
 * Before an http.Server answers a request: is the client's FIN in already
 * (sent with its request: a half-close, owed the passive close)? One
 * getsockopt, as farewell-http does before a response's first write. And
 * an HTTP/1.0 client without keep-alive reads until end of file, so it gets
 * our FIN (5 ms after the response is ACKed), not a reset.
 */
function onRequest(request) {
  const socket = request.socket;
  if (!socket[kHalfClosed] && !(socket instanceof tls.TLSSocket)) {
    // Asked at the second request (a keep-alive connection: the first one
    // was answered): a connection of one request (`Connection: close`)
    // keeps its one look and pays no call into the addon for the question.
    if (socket[kCheckFins] === undefined && socket[kAnswering]) socket[kCheckFins] = checkFins(socket);
    if (socket[kCheckFins] === false) {
      // A client far from heavy: its FIN gets the passive close whatever
      // its timing, so no syscall per request; one that turns heavy
      // meanwhile is told apart when its FIN comes (finEnd's `unchecked`).
      socket[kAnswering] = true;
      socket[kUnchecked] = true;
    } else {
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
  }
  if (request.httpVersion !== '1.0') return;
  const connection = String(request.headers.connection || '').toLowerCase();
  if (!connection.includes('keep-alive')) socket[kEofOwed] = true;
}

/**
 * Once per keep-alive connection, at its second request: whether to look at
 * the client's FIN before each request is answered. Only the fast path's
 * settings (the heavy-client choice, `auto`) can skip it, and only for a
 * client under half the heavy-client threshold (the addon's table of recent
 * endings per address), as farewell-http does.
 */
function checkFins(socket) {
  const server = serverOf(socket);
  const settings = server && server[kSettings];
  if (!settings || !server[kFastPath]) return true;
  try {
    socket[kPeer] = socket.remoteAddress;
    return native.checkFins(String(socket[kPeer]), settings.heavyClientThreshold);
  } catch {
    return true;
  }
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
  server[kSettings] = settings;
  server[kFastPath] = fastPathFits(settings);
  // New connections (see onConnection), requests (see onRequest) and
  // upgrades are seen on their way to the listeners, not as listeners: a
  // second 'connection' listener would have Node copy the listener array
  // for every connection, and an 'upgrade' listener of our own would make
  // Node hand over upgrades nobody handles. A tls.Server (https.Server)
  // hands its TLSSockets to 'secureConnection'; its 'connection' sockets
  // are the TCP ones underneath, which it ends itself. An upgraded
  // connection (a WebSocket): RFC 6455 §7.1.1 has the server close TCP
  // first after the close handshake, and clients (Chromium) wait for it, so
  // it gets our FIN once everything is ACKed, as farewell-http does.
  const connection = server instanceof tls.Server ? 'secureConnection' : 'connection';
  const emit = server.emit;
  server.emit = function farewellEmit(event, request, socket) {
    if (event === 'request') onRequest(request);
    else if (event === connection) onConnection(this, request);
    else if (event === 'upgrade' && socket instanceof net.Socket) socket[kEofOwed] = true;
    return emit.apply(this, arguments);
  };
  return server;
}

/** Counts of the teardowns of this process: started, inFlight, finished, byEnding. */
function stats() {
  return native.stats();
}

/**
 * Resolves once no teardown of the addon is in flight and no connection
 * waits on Node's loop for its client's FIN (the fast path), for a process
 * about to exit (the addon's thread does not keep Node alive: a teardown
 * still running at exit would be cut without its policy). At `deadlineMs`
 * (default 10 000) it hurries them: a waiting connection is handed over with
 * no grace, and each ends at once (`reset-at-deadline`, after one
 * probe of whether its last bytes were ACKed), as does every later teardown
 * of the process, and it resolves when they have ended (at most a second
 * more). Resolves with the number hurried.
 */
async function drain(deadlineMs = 10000) {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 10));
  const left = () => native.stats().inFlight + pendingWaits();
  const deadline = Date.now() + deadlineMs;
  while (left() > 0 && Date.now() < deadline) await pause();
  const hurried = left();
  if (hurried === 0) return 0;
  // The waits on Node's loop first: handed over with no grace (a flushing
  // one when its flush ends), then every teardown of the addon hurried.
  drainHurried = true;
  for (const wait of waits) if (wait.socket[kState] === 'waiting') hurry(wait);
  native.hurry();
  const bound = Date.now() + 1000;
  while (left() > 0 && Date.now() < bound) await pause();
  return hurried;
}

module.exports = { close, attach, stats, drain };
