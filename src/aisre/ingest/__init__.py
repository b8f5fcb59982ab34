"""Ingest: the first three stages composed. An export request is decoded (receive/),
normalized (normalize/) and submitted to the store's writer (store/), in that order; this
package only wires them together and runs the CPU-bound part in decoder processes."""
