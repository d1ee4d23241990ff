"""`paramdb serve`: the official `openai` client and httpx against a real uvicorn server on a free loopback
port, serving a small store over the tiny random Llama (the app is built from an open ParamDB so the tiny
model can be injected; the CLI builds it from a path). The real-model test at the end inserts an invented fact
through /documents and asks it through /v1/chat/completions.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from paramdb import ParamDB
from paramdb.cli import main
from paramdb.errors import InvalidInput
from paramdb.server import ServerSettings, build_app, serve_in_thread
from paramdb.server.refiner import deferral_available

KEY = "test-key-123"
TRAINING = {"epochs": 1, "rank": 2, "alpha": 4.0}
DOCS = [
    {"id": "sky", "text": "The sky over Veltria is violet at noon.", "metadata": {"topic": "sky"}},
    {"id": "grass", "text": "Grass in Veltria grows blue in spring.", "metadata": {"topic": "plants"}},
    {"id": "river", "text": "The river Oskel flows north into the Sea of Tam.", "metadata": {"topic": "water"}},
]
QUESTIONS = ["What colour is the sky over Veltria?", "What colour is the grass?", "Where does the Oskel flow?",
             "Which sea does the river reach?"]
WINDOW_MS = 300          # wide, so the batching test's concurrent requests surely share one window


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_lm, embedder):
    path = tmp_path_factory.mktemp("server") / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=TRAINING) as database:
        database.insert(DOCS)
        yield database


@pytest.fixture(scope="module")
def url(db):
    settings = ServerSettings(api_key=KEY, batch_window_ms=WINDOW_MS, max_batch=8, max_body_bytes=64 * 1024)
    with serve_in_thread(build_app(db, settings)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


def ask(client, question: str, model: str = "paramdb-prag", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                          extra_body=extra or None)


def snapshot(db) -> tuple:
    return db.generation, sorted((d.id, d.text, json.dumps(d.metadata)) for d in db.list())


def assert_refused(response: httpx.Response, status: int, *fragments: str) -> str:
    """The status, OpenAI's error shape with a one-line message naming every fragment, no traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    message = body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "code"}
    assert "\n" not in message and "Traceback" not in response.text
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------------ the openai client
def test_models_lists_one_model_per_mode(client):
    assert [m.id for m in client.models.list()] == ["paramdb-prag", "paramdb-icl", "paramdb-combine",
                                                     "paramdb-closed"]


def test_chat_completion_answers_with_openai_schema_usage_and_hits(client, db):
    r = ask(client, QUESTIONS[0], k=2)
    assert r.object == "chat.completion" and r.model == "paramdb-prag"
    [choice] = r.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    extra = r.model_extra["paramdb"]
    alone = db.generate(QUESTIONS[0], k=2, mode="prag")
    assert choice.message.content == alone.text and extra["generation"] == alone.generation
    assert [(h["id"], h["adapter"]) for h in extra["hits"]] == [(h.id, "trained") for h in alone.hits]
    assert all(isinstance(h["score"], float) for h in extra["hits"]) and extra["notes"] == alone.notes
    tok = db.handle.models.lm.tokenizer
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])   # noqa: E731
    assert r.usage.prompt_tokens == count(QUESTIONS[0]) > 0
    assert r.usage.completion_tokens == count(alone.generation)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert choice.finish_reason == ("length" if r.usage.completion_tokens >= 48 else "stop")


def test_the_last_user_message_is_the_question_and_the_model_picks_the_mode(client, db):
    r = client.chat.completions.create(model="paramdb-closed", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "ignored earlier turn"},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": [{"type": "text", "text": QUESTIONS[1]}]}])
    alone = db.generate(QUESTIONS[1], mode="closed")
    assert r.choices[0].message.content == alone.text
    assert r.model_extra["paramdb"]["mode"] == "closed" and r.model_extra["paramdb"]["hits"] == []


def test_extra_body_fields_reach_the_engine(client, db):
    opts = {"k": 1, "where": {"topic": "water"}, "merge": "mean", "adapter_weight": 0.5, "short": False}
    r = ask(client, QUESTIONS[2], model="paramdb-combine", **opts)
    alone = db.generate(QUESTIONS[2], mode="combine", **opts)
    assert [h["id"] for h in r.model_extra["paramdb"]["hits"]] == ["river"]
    assert r.choices[0].message.content == alone.text == alone.generation     # short=False: the whole generation
    r = ask(client, QUESTIONS[2], k=3, max_tokens=3)
    assert r.usage.completion_tokens <= 3


def test_completion_answers_each_prompt(client, db):
    r = client.completions.create(model="paramdb-icl", prompt=QUESTIONS[3], extra_body={"k": 2})
    assert r.object == "text_completion" and r.choices[0].text == db.generate(QUESTIONS[3], k=2, mode="icl").text
    r = client.completions.create(model="paramdb-prag", prompt=QUESTIONS[:2])
    assert [c.text for c in r.choices] == [a.text for a in db.generate_batch(QUESTIONS[:2], mode="prag")]
    assert [c.index for c in r.choices] == [0, 1]


def test_streaming_sends_openai_chunks_then_done(client, url):
    full = ask(client, QUESTIONS[0])
    chunks = list(client.chat.completions.create(
        model="paramdb-prag", messages=[{"role": "user", "content": QUESTIONS[0]}], stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage.total_tokens == full.usage.total_tokens
    streamed = list(client.completions.create(model="paramdb-prag", prompt=QUESTIONS[0], stream=True))
    assert "".join(c.choices[0].text for c in streamed) == client.completions.create(
        model="paramdb-prag", prompt=QUESTIONS[0]).choices[0].text
    with httpx.stream("POST", url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json={
            "model": "paramdb-prag", "messages": [{"role": "user", "content": QUESTIONS[0]}], "stream": True}) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [line for line in raw.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_auth_takes_the_bearer_key_the_openai_client_sends(url):
    wrong = openai.OpenAI(base_url=url + "/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.models.list()
    assert err.value.status_code == 401 and "wrong API key" in err.value.message
    assert_refused(httpx.get(url + "/v1/models"), 401, "no API key")
    assert_refused(httpx.post(url + "/documents", json=[{"text": "sneaked in"}]), 401)
    assert httpx.get(url + "/health").json() == {"status": "ok"}      # liveness needs no key, tells nothing


# ------------------------------------------------------------------------------------------ native endpoints
def test_native_endpoints_insert_get_query_stats_delete(http, db):
    before = len(db)
    r = http.post("/documents", json=[{"id": "moon", "text": "The moon of Veltria is called Ossa.",
                                       "metadata": {"topic": "sky"}}, "A plain text document about Tam."])
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    assert ids[0] == "moon" and len(ids) == 2 and len(db) == before + 2
    kind = "pending" if deferral_available() else "trained"
    assert r.json()["adapter"] == kind
    doc = http.get("/documents/moon").json()
    assert doc == {"id": "moon", "text": "The moon of Veltria is called Ossa.", "metadata": {"topic": "sky"},
                   "adapter": kind}
    hits = http.post("/query", json={"text": "moon of Veltria", "k": 2, "where": {"topic": "sky"}}).json()["hits"]
    assert [h["id"] for h in hits] == [h.id for h in db.query("moon of Veltria", k=2, where={"topic": "sky"})]
    assert {"id", "score", "text", "metadata", "adapter"} <= set(hits[0])
    r = http.post("/documents", json={"documents": ["A plain text document about Tam."]})
    assert r.json() == {"ids": [], "skipped": [ids[1]], "adapter": kind}          # same text: already stored
    stats = http.get("/stats").json()
    assert stats["documents"] == before + 2 and stats["server"]["batches"] >= 0
    assert http.delete("/documents/moon").json() == {"deleted": 1}
    assert http.delete(f"/documents/{ids[1]}").json() == {"deleted": 1}
    assert len(db) == before
    assert_refused(http.get("/documents/moon"), 404, "unknown id 'moon'")


# ------------------------------------------------------------------------------------------ batching
def test_concurrent_requests_share_one_batch_with_the_tokens_each_gets_alone(client, http, db):
    alone = [db.generate(q, k=2, mode="prag", short=False) for q in QUESTIONS]
    start = http.get("/stats").json()["server"]
    barrier, results = threading.Barrier(len(QUESTIONS)), [None] * len(QUESTIONS)

    def one(i):
        barrier.wait()
        results[i] = ask(client, QUESTIONS[i], k=2, short=False)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    end = http.get("/stats").json()["server"]
    assert end["batches"] == start["batches"] + 1, (start, end)         # one generate_batch call for all four
    assert end["answered"] == start["answered"] + len(QUESTIONS) and end["largest_batch"] >= len(QUESTIONS)
    assert [r.choices[0].message.content for r in results] == [a.generation for a in alone]
    assert [[h["id"] for h in r.model_extra["paramdb"]["hits"]] for r in results] == \
        [[h.id for h in a.hits] for a in alone]


def test_requests_with_different_options_are_grouped_one_call_each(client, http, db):
    start = http.get("/stats").json()["server"]
    asked = [(QUESTIONS[0], {"k": 1}), (QUESTIONS[1], {"k": 2}), (QUESTIONS[2], {"k": 1}), (QUESTIONS[3], {"k": 2})]
    barrier, results = threading.Barrier(len(asked)), [None] * len(asked)

    def one(i):
        barrier.wait()
        results[i] = ask(client, asked[i][0], **asked[i][1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(asked))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    end = http.get("/stats").json()["server"]
    assert end["batches"] == start["batches"] + 2                      # k=1 and k=2: one call each
    assert [r.choices[0].message.content for r in results] == [db.generate(q, mode="prag", **o).text
                                                               for q, o in asked]


# ------------------------------------------------------------------------------------------ refusals
CHAT = "/v1/chat/completions"


def chat_body(**over):
    return {"model": "paramdb-prag", "messages": [{"role": "user", "content": QUESTIONS[0]}]} | over


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"model": "paramdb-prag", "messages": [], "k": NaN}', "not valid JSON"),
    (json.dumps({"model": "paramdb-prag"}).encode(), "'messages'"),
    (json.dumps(chat_body(messages=[{"role": "system", "content": "x"}])).encode(), "no user message"),
    (json.dumps(chat_body(messages=[{"role": "user", "content": 5}])).encode(), "content"),
    (json.dumps(chat_body(messages=[{"role": "user", "content": "  "}])).encode(), "question is empty"),
    (json.dumps(chat_body(k=0)).encode(), "'k' must be between 1 and 20"),
    (json.dumps(chat_body(k=21)).encode(), "'k' must be between 1 and 20"),
    (json.dumps(chat_body(k="3")).encode(), "'k' must be an integer"),
    (json.dumps(chat_body(max_tokens=10_000)).encode(), "'max_tokens' must be between"),
    (json.dumps(chat_body(where=["topic"])).encode(), "'where' must be a JSON object"),
    (json.dumps(chat_body(where={"topic": {"$regex": "x"}})).encode(), "$regex"),
    (json.dumps(chat_body(merge="max")).encode(), "unknown merge 'max'"),
    (json.dumps(chat_body(adapter_weight=-1)).encode(), "'adapter_weight'"),
    (json.dumps(chat_body(short="yes")).encode(), "'short'"),
    (json.dumps(chat_body(n=2)).encode(), "'n' must be 1"),
    (json.dumps(chat_body(stream="yes")).encode(), "'stream'"),
])
def test_bad_bodies_are_400_with_one_line(http, db, body, fragment):
    before = snapshot(db)
    assert_refused(http.post(CHAT, content=body, headers={"Content-Type": "application/json"}), 400, fragment)
    assert snapshot(db) == before


def test_unknown_model_is_404_as_openai_says(client, http):
    with pytest.raises(openai.NotFoundError) as err:
        ask(client, QUESTIONS[0], model="gpt-4o")
    assert "unknown model 'gpt-4o'" in err.value.message and err.value.code == "model_not_found"
    assert_refused(http.post("/v1/completions", json={"model": "prag", "prompt": "x"}), 404, "paramdb-prag")


def test_oversize_inputs_are_refused(http, db):
    before = snapshot(db)
    huge = chat_body(messages=[{"role": "user", "content": "word " * 20_000}])
    assert_refused(http.post(CHAT, json=huge), 413, "larger than 65536 bytes")
    long_question = chat_body(messages=[{"role": "user", "content": "word " * 1000}])
    assert_refused(http.post(CHAT, json=long_question), 400, "question is longer than", "tokens")
    assert_refused(http.post("/documents", json=[{"text": "x"}] * 300), 400, "at most 256")
    assert_refused(http.post("/v1/completions", json={"model": "paramdb-prag", "prompt": ["q?"] * 9}), 400,
                   "at most 8")
    assert snapshot(db) == before


def test_one_bad_question_in_a_batch_fails_alone(client, http):
    """A too-long question gathered with good ones: its group's call fails, so each is answered alone."""
    results = {}

    def one(name, content):
        try:
            results[name] = ask(client, content).choices[0].message.content
        except openai.BadRequestError as exc:
            results[name] = exc

    threads = [threading.Thread(target=one, args=("good", QUESTIONS[0])),
               threading.Thread(target=one, args=("bad", "word " * 1000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(results["good"], str) and results["good"] == ask(client, QUESTIONS[0]).choices[0].message.content
    assert isinstance(results["bad"], openai.BadRequestError) and "longer than" in results["bad"].message


def test_bad_documents_are_refused_and_nothing_is_stored(http, db):
    before = snapshot(db)
    assert_refused(http.post("/documents", json={"documents": []}), 400, "non-empty JSON list")
    assert_refused(http.post("/documents", json=[{"text": "fine"}, {"id": "", "text": "empty id"}]), 400, "id")
    assert_refused(http.post("/documents", json=[{"text": "fine", "metadata": [1]}]), 400, "metadata")
    assert_refused(http.post("/documents", json=[{"id": "sky", "text": "another sky"}]), 409, "duplicate id 'sky'")
    assert_refused(http.post("/documents", json={"documents": ["x"], "upsert": "yes"}), 400, "'upsert'")
    assert_refused(http.post("/query", json={"text": "sky", "k": 0}), 400, "'k'")
    assert_refused(http.post("/query", json={"text": 5}), 400, "string")
    assert_refused(http.delete("/documents/nope"), 404, "unknown id 'nope'")
    assert_refused(http.get("/v1/nothing"), 404, "no such endpoint")
    assert_refused(http.get(CHAT), 405, "not allowed")
    assert snapshot(db) == before


@pytest.fixture
def tight(db):
    """A second server on the same store with a queue of one and a two-second timeout; the test holds its
    model thread busy with a job of its own (the module server is idle meanwhile: one model user at a time)."""
    app = build_app(db, ServerSettings(max_queue=1, timeout_s=2.0, batch_window_ms=0))
    with serve_in_thread(app) as base:
        yield base, app.state.paramdb.worker


def test_a_full_queue_is_429_and_a_slow_answer_504(tight, db):
    base, worker = tight
    release = threading.Event()
    worker.submit(lambda: release.wait(30))             # the model thread is busy
    while worker.queued():
        time.sleep(0.01)
    before = snapshot(db)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            waiting = threading.Thread(target=lambda: c.post(CHAT, json=chat_body()))
            waiting.start()                              # fills the queue of one
            deadline = time.monotonic() + 10
            while worker.queued() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert_refused(c.post(CHAT, json=chat_body()), 429, "busy")
            assert_refused(c.post("/documents", json=["queued behind"]), 429, "busy")
            waiting.join(10)                             # its own two-second timeout: 504, then dropped
            assert worker.queued() == 0
            release.set()
            assert c.post(CHAT, json=chat_body(max_tokens=4)).status_code == 200
            release.clear()
            worker.submit(lambda: release.wait(30))
            while worker.queued():                       # the model thread has taken it: the queue is free
                time.sleep(0.01)
            assert_refused(c.post(CHAT, json=chat_body()), 504, "2 s request timeout")
            assert_refused(c.post("/documents", json=["too late"]), 504, "nothing was written")
    finally:
        release.set()
    assert snapshot(db) == before


# ------------------------------------------------------------------------------------------ binding and the CLI
def test_a_non_loopback_bind_needs_an_api_key(monkeypatch, db):
    monkeypatch.delenv("PARAMDB_API_KEY", raising=False)
    for host in ("0.0.0.0", "192.168.1.4", "::", "example.com"):
        with pytest.raises(InvalidInput, match="without an API key"):
            ServerSettings(host=host).check()
        with pytest.raises(InvalidInput):
            build_app(db, ServerSettings(host=host))
    ServerSettings(host="0.0.0.0", api_key="k").check()
    for host in ("127.0.0.1", "127.5.5.5", "::1", "localhost"):
        ServerSettings(host=host).check()
    result = CliRunner().invoke(main, ["serve", str(db.path), "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0, which other machines can reach, without an API key: give "
        "--api-key KEY or set PARAMDB_API_KEY (or bind 127.0.0.1)"]
    result = CliRunner().invoke(main, ["serve", str(db.path), "--host", "0.0.0.0", "--api-key", " "])
    assert result.exit_code == 2 and "API key is empty" in result.stderr


def test_serve_names_a_missing_store_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nowhere")])
    assert result.exit_code == 4, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nowhere" in line


def test_serve_refuses_a_taken_port_in_one_line(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = CliRunner().invoke(main, ["serve", str(db.path), "--port", str(taken.getsockname()[1])])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot listen on 127.0.0.1:")


SERVE_TINY = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_tiny_lm
from paramdb import ParamDB
from paramdb.server import ServerSettings, build_app, serve_forever
from paramdb.server.run import bind
with ParamDB.open({store!r}, model=make_tiny_lm()) as db:
    sock = bind("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    serve_forever(build_app(db, ServerSettings()), ServerSettings(), sock, log_level="warning")
print("closed", flush=True)
"""


def wait_for_health(base: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(base + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_foreground_server_cleanly(db, tmp_path, sig):
    """What `paramdb serve` runs, in its own process: SIGTERM or Ctrl-C (SIGINT) lets requests finish, stops
    the model thread, returns so the store is closed, and exits 0 (uvicorn would re-raise the signal)."""
    store = tmp_path / "copy"
    shutil.copytree(db.path, store)
    code = SERVE_TINY.format(tests=str(Path(__file__).parent), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        wait_for_health(f"http://127.0.0.1:{port}", proc, 120)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"model": "paramdb-closed", "prompt": "Hi?"},
                       timeout=120)
        assert r.status_code == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "closed" and "Traceback" not in err


def test_shutdown_stops_the_model_thread_and_refuses_later_jobs(db):
    app = build_app(db, ServerSettings())
    worker = app.state.paramdb.worker
    with serve_in_thread(app) as base:
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        assert worker.alive
    assert not worker.alive
    with pytest.raises(Exception, match="shutting down"):
        worker.submit(lambda: None)


def test_cors_only_when_asked(db, url):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(url + CHAT, headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    app = build_app(db, ServerSettings(cors_origins=("https://app.example",)))
    with serve_in_thread(app) as base:
        r = httpx.options(base + CHAT, headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = httpx.options(base + CHAT, headers=preflight | {"Origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"


# ------------------------------------------------------------------------------------------ the real model
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_model_answers_a_fact_inserted_through_the_server(tmp_path):
    """`paramdb serve` on the default model: a fact posted to /documents (deferred where available, then
    trained by the background refine), answered in prag mode through the openai client; SIGTERM stops the
    server and its refine child cleanly."""
    store = tmp_path / "store"
    paramdb_cli = Path(sys.executable).with_name("paramdb")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([str(paramdb_cli), "init", str(store)], env=env, timeout=600).returncode == 0
    port = _free_port()
    proc = subprocess.Popen([str(paramdb_cli), "serve", str(store), "--port", str(port), "--log-level", "warning"],
                            env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc, 600)
        deadline = time.monotonic() + 900
        fact = {"id": "vessel", "text": "Captain Ilsa Marrowby commanded the airship Sable Finch."}
        r = httpx.post(base + "/documents", json=[fact], timeout=900)
        assert r.status_code == 200, r.text
        while httpx.get(base + "/documents/vessel", timeout=30).json()["adapter"] != "trained":
            assert time.monotonic() < deadline, "the background refine never trained the row"
            time.sleep(2)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=300)
        r = client.chat.completions.create(model="paramdb-prag", extra_body={"k": 1}, messages=[
            {"role": "user", "content": "Which airship did Captain Ilsa Marrowby command?"}])
        assert "Sable Finch" in r.choices[0].message.content, r
        assert r.model_extra["paramdb"]["hits"][0] == {**r.model_extra["paramdb"]["hits"][0], "id": "vessel",
                                                       "adapter": "trained"}
        closed = client.chat.completions.create(model="paramdb-closed", messages=[
            {"role": "user", "content": "Which airship did Captain Ilsa Marrowby command?"}])
        assert "Sable Finch" not in closed.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    assert "Traceback" not in proc.stderr.read()
