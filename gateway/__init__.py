"""All of IPX's I/O: the CLI, and (later) the WebSocket server, the sequencer and publishers."""
