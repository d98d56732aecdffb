"""The live path of /graphql: WebSockets in, events out.

- protocols.py: the graphql-transport-ws and graphql-ws handlers (keep-alive, admission, the live sink);
- connect.py: authentication on connect, and closing a socket when its key is revoked;
- admission.py: caps on sockets waiting for connection_init and on streams per key;
- revocation.py: the same end for a multipart/mixed stream;
- rendering.py: one execution and one encoding per event for every subscriber alike (render groups);
- delivery.py: `follow_live`, the one entry point a subscription hands its live events to;
- fan_out.py and socket_writer.py: one task per render group writing each frame to every member's socket.
"""
