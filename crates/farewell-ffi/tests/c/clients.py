"""Clients of the echo server that we did not write in C: python's socket.

Usage: clients.py MODE PORT. Prints one line:
    MODE port=LOCAL_PORT end=we-closed|reset|eof|timeout received=b'...'

Modes:
    cooperative    handshake, one echo, QUIT; closes on BYE (keeps TIME-WAIT itself)
    bad-handshake  sends an HTTP request line; closes on BYE
    ignoring       handshake, then reads everything and never closes (idle -> BYE -> reset)
    silent         sends nothing, reads everything, never closes (handshake timeout -> BYE -> reset)
    lingerer       handshake and QUIT, then reads on and never closes (for the shutdown test)
"""
import socket
import sys
import time

mode, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
s = socket.create_connection(("127.0.0.1", port), timeout=20)
local_port = s.getsockname()[1]
received = b""
end = "?"


def read_until_bye():
    global received
    while b"BYE " not in received or not received.endswith(b"\n"):
        data = s.recv(4096)
        if not data:
            return "eof"
        received += data
    return None


try:
    if mode == "cooperative":
        s.sendall(b"HELLO py\necho me\nQUIT\n")
        end = read_until_bye() or "we-closed"
    elif mode == "bad-handshake":
        s.sendall(b"GET / HTTP/1.0\r\n")
        end = read_until_bye() or "we-closed"
    elif mode in ("ignoring", "silent", "lingerer"):
        if mode == "ignoring":
            s.sendall(b"HELLO py\n")
        if mode == "lingerer":
            s.sendall(b"HELLO py\nQUIT\n")
        while time.monotonic() < deadline:
            data = s.recv(4096)
            if not data:
                end = "eof"
                break
            received += data
    else:
        sys.exit(f"unknown mode {mode}")
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "timeout"
s.close()
print(f"{mode} port={local_port} end={end} received={received!r}", flush=True)
