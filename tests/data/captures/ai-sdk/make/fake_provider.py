"""A fake OpenAI-compatible provider on loopback that also records OTLP/HTTP bodies.

It answers /v1/chat/completions (plain and streamed, tool calls, injected 500s),
/v1/responses (the Responses API: plain and streamed, function calls, handoffs, cached tokens,
injected 500s) and /v1/embeddings, Anthropic's /v1/messages, and Gemini's /v1beta/models/M:generateContent,
:streamGenerateContent and :batchEmbedContents (injected 500s, cached tokens, function calls),
keeps what it returned per model and per call (the ground truth), and stores every
POST to /v1/traces as raw/NNNN.pb. Stop it with GET /shutdown; it then writes truth.json.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OUT = Path(sys.argv[1])
PORT = int(sys.argv[2])
(OUT / "raw").mkdir(parents=True, exist_ok=True)
lock = threading.Lock()
truth: dict[str, dict[str, int]] = {}
status_counts: Counter[str] = Counter()
calls: list[dict[str, object]] = []  # every answer in order: what an instrumentation may hide
bodies = [0]


def _tokens(messages: list[dict]) -> int:
    # Deterministic count: words of every text part, plus 4 per message.
    total = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += 4 + len(str(content or "").split())
        for call in m.get("tool_calls") or []:
            total += len(call["function"]["arguments"].split())
    return total


def _record(model: str, endpoint: str, status: int, inp: int = 0, out: int = 0, cached: int = 0) -> None:
    with lock:
        status_counts[f"{endpoint} {status}"] += 1
        calls.append({"model": model, "endpoint": endpoint, "status": status, "input_tokens": inp,
                      "output_tokens": out, "cached_input_tokens": cached})
        if status == 200:
            t = truth.setdefault(model, {"calls_ok": 0, "input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0})
            t["calls_ok"] += 1
            t["input_tokens"] += inp
            t["output_tokens"] += out
            t["cached_input_tokens"] += cached


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/shutdown":
            self._json(200, {})
            (OUT / "provider_truth.json").write_text(json.dumps(
                {"provider_truth_by_model": truth, "provider_status_counts": dict(status_counts), "provider_calls": calls},
                indent=1))
            threading.Thread(target=self.server.shutdown).start()
        else:
            self._json(404, {})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # The Node OTLP exporter streams its body in chunks.
        parts = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def do_POST(self) -> None:
        body = self._body()
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            with lock:
                (OUT / "raw" / f"v1_traces_{bodies[0]:04d}.pb").write_bytes(body)
                bodies[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = json.loads(body)
        if self.path.startswith("/v1beta/models/"):
            self._gemini(req)
            return
        model = req["model"]
        if self.path == "/v1/messages":
            self._anthropic(req)
            return
        if self.path == "/v1/responses":
            self._responses(req)
            return
        if self.path == "/v1/embeddings":
            values = req["input"] if isinstance(req["input"], list) else [req["input"]]
            inp = sum(len(str(v).split()) for v in values)
            _record(model, "embeddings", 200, inp)
            self._json(200, {
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(values))],
                "usage": {"prompt_tokens": inp, "total_tokens": inp},
            })
            return
        messages = req["messages"]
        text = json.dumps(messages)
        if "FAIL" in text:
            _record(model, "chat", 500)
            self._json(500, {"error": {"message": "injected failure", "type": "server_error", "code": None}})
            return
        inp = _tokens(messages)
        cached = 8 if "CACHE" in text else 0
        last = messages[-1]
        wants_tool = bool(req.get("tools")) and last.get("role") == "user" and "order" in str(last.get("content"))
        rid = f"chatcmpl-{int(time.time_ns())}"
        usage = {"prompt_tokens": inp, "completion_tokens": 0, "total_tokens": inp,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        # Handoffs (OpenAI Agents SDK): a question about an order goes to the transfer_to_*
        # tool offered; the agent it hands to then calls lookup_order.
        offered = [t.get("function", {}).get("name", "") for t in req.get("tools") or []]
        transfer = next((name for name in offered if name.startswith("transfer_to_")), None)
        called = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
        tool = "lookup_order"
        if transfer and wants_tool:
            tool, args = transfer, "{}"
        elif "lookup_order" in offered and last.get("role") == "tool" and called and called[-1].startswith("transfer_to_"):
            wants_tool, args = True, json.dumps({"orderId": "A-1042"})
        else:
            args = json.dumps({"orderId": "A-1042"})
        if wants_tool:
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_" + rid[-6:], "type": "function", "function": {"name": tool, "arguments": args}}]}
            out, finish = len(args.split()) + 3, "tool_calls"
        else:
            answer = "Your order A-1042 ships tomorrow." if last.get("role") == "tool" else "Here is a short answer for you."
            message = {"role": "assistant", "content": answer}
            out, finish = len(answer.split()), "stop"
        usage["completion_tokens"] = out
        usage["total_tokens"] = inp + out
        _record(model, "chat", 200, inp, out, cached)
        created = int(time.time())
        if not req.get("stream"):
            self._json(200, {"id": rid, "object": "chat.completion", "created": created, "model": model,
                             "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(doc: dict) -> None:
            data = f"data: {json.dumps(doc)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        if message.get("tool_calls"):  # a streamed tool call: one delta with the whole call
            calls = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
            chunk({**base, "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]})
        else:
            for word in str(message["content"]).split(" "):
                chunk({**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]})
        chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        chunk({**base, "choices": [], "usage": usage})
        data = b"data: [DONE]\n\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")


    def _responses(self, req: dict) -> None:
        """OpenAI Responses API: plain and streamed (SSE events), function calls (handoffs as
        with chat completions), cached tokens, injected 500s. Input tokens count the
        instructions and every input item like _tokens; cached ones are inside them."""
        model = req["model"]
        items = req["input"] if isinstance(req["input"], list) else [{"role": "user", "content": req["input"]}]
        text = json.dumps(items)
        if "FAIL" in text:
            _record(model, "responses", 500)
            self._json(500, {"error": {"message": "injected failure", "type": "server_error", "param": None, "code": None}})
            return

        def words(item: dict) -> int:
            content = item.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return 4 + len(str(content or "").split()) + len(str(item.get("arguments") or "").split()) \
                + len(str(item.get("output") or "").split())

        inp = sum(words(i) for i in items)
        if req.get("instructions"):
            inp += 4 + len(str(req["instructions"]).split())
        cached = 8 if "CACHE" in text else 0
        offered = [t.get("name", "") for t in req.get("tools") or []]
        transfer = next((name for name in offered if name.startswith("transfer_to_")), None)
        last = items[-1]
        called = [i["name"] for i in items if i.get("type") == "function_call"]
        asked = last.get("role") == "user" and "order" in str(last.get("content"))
        answered_transfer = last.get("type") == "function_call_output" and called and called[-1].startswith("transfer_to_")
        rid = f"resp_{time.time_ns()}"
        if transfer and asked:
            call = (transfer, "{}")
        elif "lookup_order" in offered and (answered_transfer or (asked and not transfer)):
            call = ("lookup_order", json.dumps({"orderId": "A-1042"}))
        else:
            call = None
        if call:
            item = {"type": "function_call", "id": "fc_" + rid[-8:], "call_id": "call_" + rid[-6:], "name": call[0],
                    "arguments": call[1], "status": "completed"}
            out = len(call[1].split()) + 3
        else:
            answer = "Your order A-1042 ships tomorrow." if last.get("type") == "function_call_output" \
                else "Here is a short answer for you."
            item = {"type": "message", "id": "msg_" + rid[-8:], "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": answer, "annotations": []}]}
            out = len(answer.split())
        _record(model, "responses", 200, inp, out, cached)
        usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out}
        response = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "error": None, "incomplete_details": None, "instructions": req.get("instructions"),
                    "model": model + "-2024-07-18", "output": [item], "parallel_tool_calls": True,
                    "temperature": 1.0, "tool_choice": "auto", "tools": req.get("tools") or [], "top_p": 1.0,
                    "usage": usage}
        if not req.get("stream"):
            self._json(200, response)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        seq = [0]

        def event(doc: dict) -> None:
            doc["sequence_number"] = seq[0]
            seq[0] += 1
            data = f"event: {doc['type']}\ndata: {json.dumps(doc)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        event({"type": "response.created", "response": pending})
        event({"type": "response.in_progress", "response": pending})
        if item["type"] == "function_call":
            event({"type": "response.output_item.added", "output_index": 0,
                   "item": {**item, "arguments": "", "status": "in_progress"}})
            event({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": item["id"],
                   "delta": item["arguments"]})
            event({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": item["id"],
                   "arguments": item["arguments"]})
        else:
            text_out = item["content"][0]["text"]
            event({"type": "response.output_item.added", "output_index": 0,
                   "item": {**item, "status": "in_progress", "content": []}})
            part = {"type": "output_text", "text": "", "annotations": []}
            event({"type": "response.content_part.added", "output_index": 0, "item_id": item["id"],
                   "content_index": 0, "part": part})
            for n, word in enumerate(text_out.split(" ")):
                event({"type": "response.output_text.delta", "output_index": 0, "item_id": item["id"],
                       "content_index": 0, "delta": word if n == 0 else " " + word, "logprobs": []})
            event({"type": "response.output_text.done", "output_index": 0, "item_id": item["id"],
                   "content_index": 0, "text": text_out, "logprobs": []})
            event({"type": "response.content_part.done", "output_index": 0, "item_id": item["id"],
                   "content_index": 0, "part": {**part, "text": text_out}})
        event({"type": "response.output_item.done", "output_index": 0, "item": item})
        event({"type": "response.completed", "response": response})
        self.wfile.write(b"0\r\n\r\n")

    def _anthropic(self, req: dict) -> None:
        """Anthropic Messages API: plain and streamed (SSE), injected 500s."""
        model = req["model"]
        messages = req["messages"]
        if "FAIL" in json.dumps(messages):
            _record(model, "messages", 500)
            self._json(500, {"type": "error", "error": {"type": "api_error", "message": "injected failure"}})
            return
        system = req.get("system") or ""
        if isinstance(system, list):
            system = " ".join(block.get("text", "") for block in system)
        inp = _tokens(messages) + len(str(system).split())
        answer = "Here is a short answer for you."
        out = len(answer.split())
        # The system prompt is the cached prefix: "PRIME" in it writes it to the cache, "CACHE"
        # reads it. Anthropic's input_tokens leaves both out; truth counts every input token.
        text = json.dumps(messages)
        prefix = len(str(system).split())
        cache_read = prefix if "CACHE" in text else 0
        cache_write = prefix if "PRIME" in text else 0
        _record(model, "messages", 200, inp, out, cache_read)
        if cache_write:
            calls[-1]["cache_creation_input_tokens"] = cache_write
        rid = f"msg_{time.time_ns()}"
        usage = {"input_tokens": inp - cache_read - cache_write, "output_tokens": out,
                 "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}
        if not req.get("stream"):
            self._json(200, {"id": rid, "type": "message", "role": "assistant", "model": model,
                             "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                             "stop_sequence": None, "usage": usage})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(name: str, doc: dict) -> None:
            data = f"event: {name}\ndata: {json.dumps(doc)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        event("message_start", {"type": "message_start", "message": {
            "id": rid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})
        event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        for word in answer.split(" "):
            event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word + " "}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": out}})
        event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")

    def _gemini(self, req: dict) -> None:
        """Gemini API: generateContent, streamGenerateContent (SSE), batchEmbedContents.
        promptTokenCount includes cachedContentTokenCount, as Gemini reports it."""
        model, _, method = self.path.split("?")[0].removeprefix("/v1beta/models/").partition(":")
        if method == "batchEmbedContents":
            texts = [p.get("text", "") for r in req["requests"] for p in r["content"]["parts"]]
            inp = sum(len(t.split()) for t in texts)
            _record(model, "embed", 200, inp)
            self._json(200, {"embeddings": [{"values": [0.1, 0.2, 0.3]} for _ in texts],
                             "usageMetadata": {"promptTokenCount": inp, "totalTokenCount": inp}})
            return
        text = json.dumps(req["contents"])
        if "FAIL" in text:
            _record(model, "generate", 500)
            self._json(500, {"error": {"code": 500, "message": "injected failure", "status": "INTERNAL"}})
            return

        def words(content: dict) -> int:
            total = 4
            for part in content.get("parts") or []:
                if "text" in part:
                    total += len(part["text"].split())
                for key in ("functionCall", "functionResponse"):
                    if key in part:
                        total += len(json.dumps(part[key]).split())
            return total

        inp = sum(words(c) for c in req["contents"])
        if req.get("systemInstruction"):
            inp += words(req["systemInstruction"]) - 4
        cached = 8 if "CACHE" in text else 0
        last = req["contents"][-1]
        last_parts = last.get("parts") or []
        answered_tool = any("functionResponse" in part for part in last_parts)
        wants_tool = bool(req.get("tools")) and not answered_tool and "order" in json.dumps(last_parts)
        rid = f"resp-{time.time_ns()}"
        if wants_tool:
            parts = [{"functionCall": {"name": "lookup_order", "args": {"orderId": "A-1042"}}}]
            out = 5
        else:
            answer = "Your order A-1042 ships tomorrow." if answered_tool else "Here is a short answer for you."
            parts = [{"text": answer}]
            out = len(answer.split())
        _record(model, "generate", 200, inp, out, cached)

        def usage(out_so_far: int) -> dict:
            doc = {"promptTokenCount": inp, "candidatesTokenCount": out_so_far, "totalTokenCount": inp + out_so_far}
            if cached:
                doc["cachedContentTokenCount"] = cached
            return doc

        version = model + "-001"
        if method == "generateContent":
            self._json(200, {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                                             "index": 0}],
                             "usageMetadata": usage(out), "modelVersion": version, "responseId": rid})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # Like Gemini: every chunk carries the usage so far; the last one the totals.
        pieces = [p + " " for p in parts[0]["text"].split(" ")] if "text" in parts[0] else [None]
        for n, piece in enumerate(pieces, 1):
            part = {"text": piece} if piece is not None else parts[0]
            doc = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                   "usageMetadata": usage(round(out * n / len(pieces))), "modelVersion": version, "responseId": rid}
            if n == len(pieces):
                doc["candidates"][0]["finishReason"] = "STOP"
            data = f"data: {json.dumps(doc)}\r\n\r\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
