#!/usr/bin/env python3
"""faultfwd.py: a TCP forwarder that injects faults, for the cache history test.

    faultfwd.py LISTEN_PORT TARGET_PORT CONTROL_PORT

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT (e.g. a proxy's
pg_control_url to PostgreSQL).  A line protocol on 127.0.0.1:CONTROL_PORT
changes its behaviour; every command is answered with one line:

    freeze       stop moving bytes, both ways, on every connection (new
                 ones too); the sockets stay open, as with a hung peer
    thaw         move bytes again (what was held is delivered in order)
    kill         close every connection at once (RST)
    refuse MS    stop listening for MS milliseconds: connection refused
    ports        the local ports of the connections to TARGET_PORT, so that
                 pg_stat_activity.client_port tells whose backends they are
    stats        connections accepted, refused, killed so far

It runs until killed.
"""
import asyncio
import socket
import sys


class Forwarder:
    def __init__(self, listen_port, target_port):
        self.listen_port = listen_port
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.conns = set()  # (client writer, upstream writer)
        self.server = None
        self.accepted = self.killed = self.refused_windows = 0

    async def start(self):
        self.server = await asyncio.start_server(self.on_client, "127.0.0.1", self.listen_port, reuse_address=True)

    async def pump(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def on_client(self, creader, cwriter):
        self.accepted += 1
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cwriter.close()
            return
        pair = (cwriter, uwriter)
        self.conns.add(pair)
        try:
            await asyncio.gather(self.pump(creader, uwriter), self.pump(ureader, cwriter))
        finally:
            self.conns.discard(pair)

    def kill(self):
        for cw, uw in list(self.conns):
            for w in (cw, uw):
                sock = w.get_extra_info("socket")
                try:
                    if sock is not None:  # abortive close: the peer sees a reset, not a clean end
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    w.transport.abort()
                except OSError:
                    pass
            self.killed += 1
        self.conns.clear()

    async def refuse(self, ms):
        self.refused_windows += 1
        self.server.close()
        await asyncio.sleep(ms / 1000.0)
        await self.start()

    def ports(self):
        out = []
        for _, uw in self.conns:
            name = uw.get_extra_info("sockname")
            if name:
                out.append(str(name[1]))
        return " ".join(out)


async def control(fwd, reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        words = line.decode().split()
        cmd = words[0] if words else ""
        reply = "ok"
        if cmd == "freeze":
            fwd.flowing.clear()
        elif cmd == "thaw":
            fwd.flowing.set()
        elif cmd == "kill":
            fwd.kill()
        elif cmd == "refuse" and len(words) == 2 and words[1].isdigit():
            asyncio.get_running_loop().create_task(fwd.refuse(int(words[1])))
        elif cmd == "ports":
            reply = fwd.ports()
        elif cmd == "stats":
            reply = "accepted %d killed %d refused_windows %d" % (fwd.accepted, fwd.killed, fwd.refused_windows)
        else:
            reply = "error: unknown command"
        writer.write((reply + "\n").encode())
        await writer.drain()
    writer.close()


async def main():
    listen_port, target_port, control_port = (int(a) for a in sys.argv[1:4])
    fwd = Forwarder(listen_port, target_port)
    await fwd.start()
    await asyncio.start_server(lambda r, w: control(fwd, r, w), "127.0.0.1", control_port, reuse_address=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main())
