// Types of the `farewell` package (crates/farewell-node).
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** A teardown policy name, as farewell's `Policy::from_str` takes it. */
export type PolicyName =
  | 'peer-first'
  | 'plain'
  | 'lingering'
  | 'lingering-reset'
  | 'fin-then-reset'
  | 'abort'
  | 'silent';

export interface CloseOptions {
  /** The policy (default `'peer-first'`: the client closes first, or is reset once everything is ACKed). */
  policy?: PolicyName;
  /** Peer-first's grace in ms: how long the peer has to close once everything is ACKed (default 2000). Other policies have no grace and ignore it. */
  grace?: number;
  /** Peer-first: who keeps TIME-WAIT when the peer closes after delivery (default `'auto'`: the peer, unless it is a heavy client). */
  peerTimeWait?: 'auto' | 'keep' | 'spare';
  /** Peer-first: what a peer that did not close within the grace gets: `'reset'` (default) or `'fin'` (it reads end of file; for HTTP/1.0). */
  graceEnd?: 'reset' | 'fin';
  /** Endings per client address and minute above which a client is heavy (default 500). */
  heavyClientThreshold?: number;
  /** How long to wait (ms) for Node's own write buffer to reach the kernel before handing over anyway (default 15000). */
  flushTimeout?: number;
}

export interface AttachOptions extends CloseOptions {
  /** attach(): the grace (ms) before our FIN for an HTTP/1.0 client without keep-alive, which reads until end of file (default 5). */
  eofGrace?: number;
}

/** How a teardown ended: the fields of farewell's Rust `Outcome`. */
export interface Outcome {
  policy: PolicyName;
  /** e.g. `'peer-closed'`, `'reset-after-grace'`, `'fin-after-grace'`, `'reset-delivery-stalled'`. */
  ending: string;
  /** Who keeps TIME-WAIT. */
  timeWait: 'peer' | 'us' | 'us-if-peer-closes' | 'nobody';
  /** Whether the goodbye reached the peer's kernel. */
  goodbye: 'confirmed' | 'unconfirmed' | 'none-sent';
  goodbyeWritten: number;
  bytesDelivered: number;
  bytesDrained: number;
  /** Data bytes unacknowledged at close; absent when the kernel could not tell. */
  unackedAtClose?: number;
  deliverMs: number;
  graceMs: number;
  elapsedMs: number;
  /** Peer-first, when the peer's FIN came: why it got a passive close or a reset. */
  peerFin?: 'half-close' | 'kept' | 'spared' | 'light' | 'heavy';
  /** Our address, `host:port`. */
  local?: string;
  /** The peer's address, `host:port`. */
  peer?: string;
  /**
   * `true` when `attach` ended the connection on Node's own loop (its fast
   * path: the client's FIN came after the response with everything ACKed;
   * `deliverMs` is then the whole wait and `graceMs` 0), absent when the
   * addon's thread ran the teardown.
   */
  onNodeLoop?: boolean;
}

/** Errors have one of these codes (besides `ERR_INVALID_ARG_TYPE` for a wrong argument). */
export type FarewellErrorCode =
  | 'EFAREWELL_NOT_TCP'
  | 'EFAREWELL_CLOSED'
  | 'EFAREWELL_NOT_CONNECTED'
  | 'EFAREWELL_ALREADY'
  | 'EFAREWELL_BAD_OPTION'
  | 'EFAREWELL_TLS'
  | 'EFAREWELL_OS';

export interface FarewellError extends Error {
  code: FarewellErrorCode;
}

export interface Stats {
  started: number;
  inFlight: number;
  finished: number;
  /** Finished teardowns by ending. */
  byEnding: Record<string, number>;
}

/**
 * Ends `socket` with farewell: what Node still buffers, then `goodbye`, then
 * the policy; the socket is destroyed without a FIN. A `tls.TLSSocket` sends
 * close_notify first (the goodbye goes through TLS, before it); if Node could
 * not hand close_notify to the kernel at once, it rejects with
 * `EFAREWELL_TLS` and Node ends the connection itself (close_notify, FIN).
 * Rejects with a {@link FarewellError}.
 */
export function close(
  socket: Socket | TLSSocket,
  goodbye?: Buffer | Uint8Array | string | null,
  options?: CloseOptions
): Promise<Outcome>;

/**
 * Every connection `server` ends (`Connection: close`, `socket.end()`,
 * keep-alive timeout, `closeIdleConnections()`, `server.close()`) ends with
 * farewell. The server emits `'farewell'` with each `(outcome, socket)`.
 * On a `tls.Server` (`https.Server`) each TLS socket sends close_notify, then
 * no FIN.
 */
export function attach<S extends NetServer>(server: S, options?: AttachOptions): S;

/** The counts of this process's teardowns. */
export function stats(): Stats;

/**
 * Resolves once no teardown is in flight and no connection waits on Node's
 * loop for its client's FIN; at `deadlineMs` (default 10 000) hurries them (each ends at once: `reset-at-deadline`, and so does every
 * later teardown of the process) and resolves when they have, with the
 * number hurried. Call it before the process exits.
 */
export function drain(deadlineMs?: number): Promise<number>;

declare const farewell: { close: typeof close; attach: typeof attach; stats: typeof stats; drain: typeof drain };
export default farewell;
