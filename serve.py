"""A local web page for writing lyrics with the models in save/.

    python serve.py [--save_dir save] [--host 127.0.0.1] [--port 8000]

Loads the first model once, prints the URL, and serves one page (no assets from the
internet) plus a small JSON API:
  GET  /                the page
  GET  /api/models      every trained model under --save_dir, with what it is
  GET  /api/options     every field a request may set: its default, bounds or choices
                        and a one-line help, from sample.py's parser and engine.RULES
  POST /api/generate    {"model": name, "start": ..., "n" or "lines": ..., "sample": ...,
                         "temperature", "top_k", "stanza", "seed", "count", and every
                         rule's flag: "rhyme", "line_len", "acrostic", "max_copy", ...}
                        -> the lyrics and sample.py's figures (with count > 1 also
                        "drafts", one result per seed)
  POST /api/stream      the same request, answered as it is drawn: one JSON object a
                        line, {"draft": k, "text": "..."} for each piece of text, then
                        {"done": true, "result": <what /api/generate answers>}; closing
                        the connection stops the drawing
  GET  /api/status      {"drawing": requests being drawn now}
  POST /api/songs       {"files": [{"name", "data": base64}], "text": pasted, "base": name}
                        -> what data/parse.py made of them, and a token to train on
  POST /api/train       {"token", "name", "base", "num_epochs", "max_minutes",
                         "patience"} (or {"name", "continue": true}) -> starts train.py
  GET  /api/train       the training: progress line, loss curve, how it ended
  POST /api/train/stop  stops it as Ctrl-C does (it saves)
                        (pagetrain.py: one training at a time)
A request is checked by sample.py's own argument parser (sampler.build_parser), so a bad
value gets the message the command line gives (and a 400 naming the field); generation
runs through sampler.write_one(), as sample.py's does, so the rules (no-copy, loop guard, rhyme, line structure) are the same code.
A model is chosen by its name in /api/models, never by a path.

Built on the standard library's ThreadingHTTPServer: nothing to install, and the start-up
is the model's (about 2 s), not a framework's.
"""
import collections
import io
import contextlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modeldir import (BEST_STATE, CONFIG, PACKED_WEIGHTS, checkpoint_candidates,
                      corpus_length, dir_locked, read_config, read_packed, state_checkpoint,
                      tf_path)
from utils import (ArgumentParser, HelpFormatter, UserError, float_in, int_in, perplexity,
                   positive_int, run_main)

MAX_REQUEST_CHARS = 2000  # characters per request (engine.MAX_N is the command line's bound)
MAX_LINES = 100
MAX_START = 100         # characters of start text
MAX_BODY = 16 * 1024    # bytes of request body
# the page's icon (a 歌 on a dark square), also linked from web/index.html
ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" '
        'height="32" rx="6" fill="#333"/><text x="16" y="24" font-size="22" '
        'text-anchor="middle" fill="#fff">歌</text></svg>').encode("utf-8")
# sample.py's flags a request may set: these, and every rule's (engine.RULES)
OWN_FIELDS = ("start", "n", "lines", "sample", "temperature", "top_k", "stanza", "seed",
              "count", "template", "form")
MAX_DRAFTS = 4          # drafts a request (count); their characters count against MAX_REQUEST_CHARS
MAX_SECONDS = 60        # wall-clock a request may draw for (it then ends, and says so)
SOCKET_TIMEOUT = 10     # seconds a client may take to send its request (headers, body)


SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def build_parser():
    p = ArgumentParser(
        description="Serve a local page for writing lyrics with the models in --save_dir.",
        formatter_class=HelpFormatter)
    p.add_argument("--save_dir", default="save",
                   help="directory whose trained models (it and its subdirectories, e.g. "
                        "save/demo, save/base) the page offers")
    p.add_argument("--models_dir", default=SHIPPED, metavar="DIR",
                   help="a second directory of models to offer after --save_dir's: by "
                        "default the project's own models/ (models/base-verse, the "
                        "pretrained base); '' = none")
    p.add_argument("--songs_dir", default=os.path.join("data", "page"), metavar="DIR",
                   help="where the training panel writes the songs a model trains on "
                        "(DIR/NAME/lyrics.txt); the model goes to --save_dir/NAME")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (anything but loopback lets other machines "
                        "use the page)")
    p.add_argument("--port", type=int_in(0, 65535), default=8000,
                   help="port (0 = any free one)")
    p.add_argument("--max_concurrent", type=positive_int, default=8,
                   help="generation requests served at once; more wait up to 10 s, then "
                        "get 503 'busy' (8: four long requests still leave room for a "
                        "short one)")
    p.add_argument("--max_seconds", type=float_in(0.01, 3600), default=MAX_SECONDS,
                   help="wall-clock seconds a request may draw for; a longer one is "
                        "stopped and answered 503 saying so")
    return p


# ----------------------------------------------------------------------------- models


def find_models(save_dir):
    """{name: directory} of every trained model at or below save_dir; the name is the
    path relative to save_dir's parent (save, save/demo, ...)."""
    models = {}
    root = os.path.abspath(save_dir)
    base = os.path.dirname(root)
    for d, subdirs, files in os.walk(root):
        subdirs.sort()
        if CONFIG in files and checkpoint_candidates(d):
            models[os.path.relpath(d, base).replace(os.sep, "/")] = d
    return models


def model_card(name, directory):
    """What the model picker shows: cell, size, text, vocabulary, best held-out
    perplexity, and what it was fine-tuned from."""
    import numpy as np
    cfg = read_config(directory)
    base = cfg.get("init_from")
    info = {"name": name, "rnncell": cfg["rnncell"], "num_layers": cfg["num_layers"],
            "rnn_size": cfg["rnn_size"], "vocab_size": cfg["vocab_size"],
            "fine_tuned_from": os.path.basename(base) if isinstance(base, str) else None,
            "text_chars": corpus_length(directory), "best_perplexity": None}
    best = state_checkpoint(directory, BEST_STATE)
    packed = os.path.join(directory, PACKED_WEIGHTS)
    if best or os.path.exists(packed):
        try:
            if best:
                import tensorflow as tf
                loss = float(tf.train.load_checkpoint(tf_path(best)).get_tensor(
                    "best_val_loss"))
            else:
                loss = float(read_packed(packed)["best_val_loss"])
            if np.isfinite(loss):
                info["best_perplexity"] = round(perplexity(loss), 1)
        except Exception:               # a damaged checkpoint: the picker shows no figure
            pass
    return info


class Models:
    """Samplers made on first use and kept, one per (model, no-copy length), at most
    MAX_SAMPLERS of them: the least recently used one nobody is drawing from is closed
    when another is made (each holds a TensorFlow session and the training text's
    index).  Requests draw from one sampler at the same time (Session.run is
    thread-safe), so a long request does not hold up a short one to the same model."""

    MAX_SAMPLERS = 4

    def __init__(self, save_dir, *more):
        self.save_dir, self.roots = save_dir, (save_dir, *more)
        self.dirs, self.info = {}, {}
        self.skipped = set()
        self.samplers = collections.OrderedDict()      # oldest use first
        self.lock = threading.Lock()
        self.drawing = 0                 # requests drawing now (GET /api/status)
        self.refresh()

    def refresh(self):
        """Add the models that appeared since (one trained from the page gets its first
        checkpoint); a model's card is made again while it trains (its figures move)."""
        found = {}
        for root in self.roots:
            if root and os.path.isdir(root):
                for name, d in find_models(root).items():
                    found.setdefault(name, d)
        for name, d in found.items():
            if name in self.skipped or (name in self.info and not dir_locked(d)
                                        and not self.info[name].get("_training")):
                continue
            try:                 # a damaged model is left off the list, not the server
                self.info[name] = dict(model_card(name, d), _training=dir_locked(d))
                self.dirs[name] = d
            except UserError as e:
                self.skipped.add(name)
                print(f"serve: skipping {name}: {e}", file=sys.stderr)

    def drop(self, name):
        self.dirs.pop(name, None)
        self.info.pop(name, None)
        self.skipped.add(name)

    def listing(self):
        """/api/models: the models, finished ones first; `training` is true while a
        train.py holds a model's directory (its figures are not final yet)."""
        self.refresh()
        out = [dict({k: v for k, v in info.items() if k != "_training"},
                    training=dir_locked(self.dirs[name]))
               for name, info in self.info.items()]
        return sorted(out, key=lambda m: m["training"])

    @contextlib.contextmanager
    def using(self, name, max_copy):
        """The sampler for (name, max_copy), kept from being closed while in use."""
        from sampler import Sampler
        key = (name, max_copy)
        with self.lock:
            s = self.samplers.pop(key, None)
            if s is None:
                t0 = time.perf_counter()
                s = Sampler(self.dirs[name], max_copy=max_copy, warn=lambda m: None)
                s.matcher                      # built now, not in the first request
                s.users = 0
                # the request that waited for the loading says so on its card
                s.fresh_ms = round((time.perf_counter() - t0) * 1000, 1)
            self.samplers[key] = s
            s.users += 1
            self.drawing += 1
            self._evict()
        try:
            yield s
        finally:
            with self.lock:
                s.users -= 1
                self.drawing -= 1
                self._evict()

    def _evict(self):
        while len(self.samplers) > self.MAX_SAMPLERS:
            idle = next((k for k, s in self.samplers.items() if s.users == 0), None)
            if idle is None:
                return
            self.samplers.pop(idle).close()


# --------------------------------------------------------------------------- requests


class BadRequest(Exception):
    """A 400: the message, the field it is about, and (when several fields are bad)
    every field's own message in `errors`."""
    def __init__(self, message, field=None, status=400, errors=None):
        super().__init__(message)
        self.field, self.status = field, status
        self.errors = errors or ({field: message} if field else {})


def fields():
    from engine import RULES
    return OWN_FIELDS + tuple(dest for rule in RULES for dest, _ in rule.flags)


def sample_args(req, model_dir):
    """The request as sample.py's arguments, checked by sample.py's own parser: the page
    gets the command line's message for a bad value."""
    from sampler import build_parser as sample_parser
    FIELDS = fields()
    if not isinstance(req, dict):
        raise BadRequest("the request must be a JSON object")
    unknown = sorted(set(req) - set(FIELDS) - {"model"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
    argv, given = ["--save_dir", model_dir], {}
    for field in FIELDS:
        value = req.get(field)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BadRequest(f"{field}: must be a number or text", field)
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:            # a lone surrogate ("\ud800") from JSON
            raise BadRequest(f"{field}: is not valid text (a broken character)", field)
        # --field=value: a start text beginning with '-' is a value, not a flag
        given[field] = f"--{field}={value}"
        argv.append(given[field])
    parser = sample_parser()

    def error(message):
        raise BadRequest(message)
    parser.error = error
    try:
        args = parser.parse_args(argv)
    except BadRequest as e:
        import re
        m = re.match(r"argument --(\w+)", str(e))
        errors = {}                 # every bad field, each checked alone: all at once
        for field, arg in given.items():
            try:
                parser.parse_args(["--save_dir", model_dir, arg])
            except BadRequest as alone:
                errors[field] = str(alone)
        raise BadRequest(str(e), m.group(1) if m and m.group(1) in FIELDS else None,
                         errors=errors)
    check_request_limits(args)
    return args


def check_request_limits(args):
    """The page's own bounds on a request's parsed arguments (tighter than the command
    line's: one request may not hold the server for long)."""
    from engine import acrostic_chars, check_budget
    from lineplan import plan_of
    if args.lines and args.lines > MAX_LINES:
        raise BadRequest(f"argument --lines: at most {MAX_LINES} here", "lines")
    line_plan = plan_of(args)
    if line_plan is not None and len(line_plan) > MAX_LINES:
        raise BadRequest(f"argument --{line_plan.flag}: {len(line_plan)} lines; at most "
                         f"{MAX_LINES} here", line_plan.flag)
    if len(acrostic_chars(args)) > MAX_LINES:
        raise BadRequest(f"argument --acrostic: at most {MAX_LINES} characters here (one "
                         f"line each)", "acrostic")
    if args.n > MAX_REQUEST_CHARS:
        raise BadRequest(f"argument --n: at most {MAX_REQUEST_CHARS} here", "n")
    if check_budget(args, MAX_REQUEST_CHARS):
        raise BadRequest(check_budget(args, MAX_REQUEST_CHARS, " here"),
                         "acrostic" if args.acrostic else "line_len")
    if args.count > MAX_DRAFTS:
        raise BadRequest(f"argument --count: at most {MAX_DRAFTS} drafts here", "count")
    if args.count > 1 and check_budget(args, MAX_REQUEST_CHARS // args.count):
        raise BadRequest(f"{args.count} drafts: " + check_budget(
            args, MAX_REQUEST_CHARS // args.count, f" each here ({MAX_REQUEST_CHARS:,} in all)"),
            "count")
    if len(args.start) > MAX_START:
        raise BadRequest(f"argument --start: at most {MAX_START} characters here", "start")


def options():
    """/api/options: each field a request may set, as sample.py's parser has it (the
    page builds its rule fields from this, so a new rule reaches it by itself)."""
    from engine import RULES
    from sampler import build_parser
    from craft import THIRTEEN
    actions = {a.dest: a for a in build_parser()._actions}
    rule_of = {dest: rule.name for rule in RULES for dest, _ in rule.flags}
    out = []
    for field in fields():
        a = actions[field]
        bounds = getattr(a.type, "bounds", None)
        out.append({"field": field, "default": a.default, "help": a.help,
                    "choices": list(a.choices) if a.choices else None,
                    "min": bounds[0] if bounds else None,
                    "max": bounds[1] if bounds else None, "rule": rule_of.get(field)})
    return {"fields": out, "rhyme_groups": list(THIRTEEN), "max_n": MAX_REQUEST_CHARS,
            "max_lines": MAX_LINES, "max_start": MAX_START, "max_drafts": MAX_DRAFTS}


def generate(models, req, on_text=None):
    """One request: the first draft's result, and with count > 1 every draft in
    "drafts" (seeds seed, seed + 1, ..., as sample.py --count writes them).
    on_text(k, text), when given, gets draft k's text as it is drawn."""
    from craft import DEFAULT_MAX_COPY
    from sampler import card_plan, command_of, copy_warning, stanza_breaks, start_ids
    name = req.get("model") if isinstance(req, dict) else None
    if name is not None and not isinstance(name, str):
        raise BadRequest("model: must be a model's name (text), as /api/models lists them",
                         "model")
    if name not in models.dirs:
        raise BadRequest(f"no model named {name!r}; choose one of: "
                         f"{', '.join(models.dirs) or 'none (train one first)'}", "model")
    args = sample_args(req, models.dirs[name])
    max_copy = DEFAULT_MAX_COPY if args.max_copy is None else args.max_copy
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    warnings = []
    with models.using(name, max_copy) as s:
        if max_copy and s.index is None:
            # as sample.py: a --max_copy asked for is refused without the training text,
            # the default one is turned off with a warning
            why = (f"the model {name} has no training text (corpus.npy), which the "
                   f"no-copy rule needs")
            if args.max_copy is not None:
                raise BadRequest(f"max_copy: {why}; ask for max_copy 0", "max_copy")
            warnings.append(f"{why}, so it is off")
            args.max_copy = max_copy = 0
        kept, ids = start_ids(args.start, s.vocab, warn=lambda m: warnings.append(
            m.split("warning: ", 1)[-1]))
        copy_length = s.index.length if s.index is not None else 0
        load_ms, s.fresh_ms = getattr(s, "fresh_ms", None), None
        try:
            drafts = [draft(s, args, ids, kept, seed + k, on_text and (
                lambda text, k=k: on_text(k, text))) for k in range(args.count)]
        except UserError as e:             # e.g. an acrostic character the model never saw
            raise BadRequest(str(e), "acrostic" if "acrostic" in str(e) else None)
    drafts[0]["load_ms"] = load_ms
    args.save_dir = os.path.relpath(models.dirs[name])     # as typed where serve.py runs
    for d in drafts:
        n_lines = len(d["lines"])
        d.update(model=name, breaks=stanza_breaks(args, kept, n_lines),
                 plan=card_plan(args, kept, n_lines, d["plan"]).as_json(args.line_len),
                 max_copy=copy_length,
                 command=command_of(args, d["seed"]),      # one draft: its own seed
                 warnings=warnings + [w for w in (copy_warning(max_copy),) if w]
                 + d.pop("own_warnings"))
    result = dict(drafts[0])
    if args.count > 1:
        result["drafts"] = drafts
    return result


def draft(s, args, ids, kept, seed, on_text=None):
    """One sample with its lines, rhyming line ends and time."""
    from sampler import lines_warning, write_one
    rhyme = args.rhyme
    t0 = time.perf_counter()
    result = write_one(s, args, ids, kept, seed, s.matcher, on_text)
    result["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    lines = result["text"].split(" ")
    group = None
    if rhyme:
        from craft import rhyme_group
        target = result["target"] or (rhyme if rhyme != "auto" else None)
        group = [bool(line) and rhyme_group(line[-1]) == target for line in lines]
    w = lines_warning(args, result["text"])
    result.update(lines=lines, rhymes=group, seed_text=str(seed),  # exact in JavaScript
                  own_warnings=[w] if w else [])
    return result


# ------------------------------------------------------------------------------ server


def read_body(handler, limit=MAX_BODY, what=None):
    """(True, the request's JSON body), or (False, None) once a 400/408/413 is sent.  A
    body over `limit` bytes is refused by its Content-Length, before it is read."""
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if not 0 < length <= limit:
        handler.send(413 if length > limit else 400,
                     {"error": what if what and length > limit else
                      f"send a JSON body of at most {limit:,} bytes"})
        handler.close_connection = True          # the unread body is not a next request
        return False, None
    try:
        body = handler.rfile.read(length)
    except TimeoutError:
        handler.fail(408, {"error": f"the request's body did not arrive within "
                                    f"{SOCKET_TIMEOUT} s (its Content-Length is "
                                    f"{length:,} bytes)"})
        return False, None
    try:
        return True, json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):      # nested 8,000 deep
        handler.send(400, {"error": "the body is not JSON (or nested too deep)"})
        return False, None


def public_message(message, dirs):
    """An error message without the machine's paths: a model's directory (dirs: {name:
    directory}) becomes its name, any other absolute path its last part."""
    import re
    for name, d in sorted(dirs.items(), key=lambda kv: -len(kv[1])):
        message = message.replace(os.path.abspath(d), name).replace(d, name)
    return re.sub(r"(?<![\w.:/])/(?:[^\s/:;,()'\"]+/)+([^\s/:;,()'\"]*)", r"\1", message)


class Handler(BaseHTTPRequestHandler):
    """The page and the JSON API; make_handler binds it to the models and the limit of
    requests drawn at once."""
    server_version = "lyrics/1"
    models = busy = page = trainer = None
    max_seconds = MAX_SECONDS
    # a client that sends its headers or body slowly, or less body than it announced,
    # gets SOCKET_TIMEOUT seconds, not a thread until it hangs up
    timeout = SOCKET_TIMEOUT

    def log_message(self, fmt, *args):       # quiet: one line per request is noise
        pass

    def send(self, status, body, ctype="application/json; charset=utf-8"):
        data = body if isinstance(body, bytes) else json.dumps(
            body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/", "/index.html"):
            self.send(200, self.page, "text/html; charset=utf-8")
        elif self.path == "/api/models":
            self.send(200, {"models": self.models.listing()})
        elif self.path == "/api/options":
            self.send(200, options())
        elif self.path == "/api/status":
            self.send(200, {"drawing": self.models.drawing})
        elif self.path == "/api/train":
            self.send(200, self.trainer.status())
        elif self.path == "/favicon.ico":
            self.send(200, ICON, "image/svg+xml")
        else:
            self.send(404, {"error": f"no such page: {self.path}"})

    def do_HEAD(self):
        """GET's status and headers without the body (link checkers, curl -I)."""
        self.wfile, body = io.BytesIO(), self.wfile       # what GET writes, dropped
        try:
            self.do_GET()
            head = self.wfile.getvalue().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        finally:
            self.wfile = body
        self.wfile.write(head)

    def do_POST(self):
        self.streaming, self.streamed = False, 0
        if self.path in ("/api/songs", "/api/train", "/api/train/stop"):
            return self.panel()
        if self.path not in ("/api/generate", "/api/stream"):
            return self.send(404, {"error": f"no such endpoint: {self.path}"})
        ok, req = read_body(self)
        if not ok:                                 # refused, and answered
            return
        if not self.busy.acquire(timeout=10):
            return self.send(503, {"error": "busy: too many requests at once; try again"})
        self.deadline, self.checked = None, 0      # the clock starts with the drawing
        try:
            if self.path == "/api/stream":
                result = generate(self.models, req, self.stream)
                self.stream(None, None, {"done": True, "result": result})
            else:
                self.send(200, generate(self.models, req, self.watch))
        except (BrokenPipeError, ConnectionResetError):  # the page stopped it
            print(f"serve.py: a request stopped after {self.streamed:,} characters: the "
                  f"page closed it", file=sys.stderr, flush=True)
        except BadRequest as e:
            self.fail(e.status, {"error": self.public(str(e)), "field": e.field,
                                 "errors": {k: self.public(v) for k, v in e.errors.items()}})
        except UserError as e:                   # e.g. a model damaged since start
            self.fail(500, {"error": self.public(str(e))})
        except Exception as e:                   # never a dead server
            self.fail(500, {"error": self.public(
                f"internal error ({type(e).__name__}: {e})")})
        finally:
            self.busy.release()

    def panel(self):
        """The training panel's POSTs (pagetrain.py)."""
        from pagetrain import MAX_UPLOAD, PanelError, preview, read_songs
        if self.path == "/api/train/stop":
            ok, req = True, {}
            if self.headers.get("Content-Length") not in (None, "0"):
                ok, req = read_body(self)
        else:
            limit = MAX_UPLOAD * 4 // 3 + MAX_BODY if self.path == "/api/songs" else MAX_BODY
            ok, req = read_body(self, limit, f"at most {MAX_UPLOAD // 2 ** 20} MB of songs "
                                             f"at once (about a million characters); for "
                                             f"more, use data/parse.py and train.py in a "
                                             f"terminal")
        if not ok:
            return
        try:
            if not isinstance(req, dict):
                raise PanelError("the request must be a JSON object")
            if self.path == "/api/songs":
                text, figures = read_songs(req)
                base = req.get("base")
                vocab = None
                if isinstance(base, str) and base in self.models.dirs:
                    from modeldir import read_vocab
                    vocab = set(read_vocab(self.models.dirs[base])[0])
                out = preview(text, figures, vocab)
                out["token"] = self.trainer.stage(text)
                self.send(200, out)
            elif self.path == "/api/train":
                self.send(200, self.trainer.start(req, dict(self.models.dirs)))
            else:
                self.send(200, self.trainer.stop())
        except PanelError as e:
            self.send(e.status, {"error": self.public(str(e)), "field": e.field})
        except UserError as e:
            self.send(500, {"error": self.public(str(e))})

    def watch(self, k, text):
        """on_text of a request: the wall-clock limit on drawing (loading a model is not
        counted), and (every 64 characters, for
        /api/generate, which writes nothing until the end) whether the client is still
        there; streaming finds that out by writing."""
        self.streamed += len(text or "")
        if self.deadline is None:          # not the model's loading: its first text
            self.deadline = time.monotonic() + self.max_seconds
        if time.monotonic() > self.deadline:
            raise BadRequest(f"the request took more than {self.max_seconds:g} s and was "
                             f"stopped "
                             f"after {self.streamed:,} characters; ask for fewer characters, "
                             f"lines or drafts", status=503)
        if not self.streaming and self.streamed - self.checked >= 64:
            self.checked = self.streamed
            if client_gone(self.connection):
                raise ConnectionResetError("the client closed the connection")

    def public(self, message):
        return public_message(message, self.models.dirs)

    def not_allowed(self):
        """PUT, DELETE, PATCH: a JSON 405 naming what is allowed, like every other answer
        of the API (the standard library answers an HTML 501 page)."""
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD, POST")
        data = json.dumps({"error": f"{self.command} is not allowed here: GET the page "
                                    f"and /api/models, /api/options, /api/status, "
                                    f"/api/train; POST /api/generate, /api/stream, "
                                    f"/api/songs, /api/train and /api/train/stop"}
                          ).encode("utf-8")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_DELETE = do_PATCH = not_allowed

    def stream(self, k, text, message=None):
        """One line of a streamed answer; the headers go with the first (a request
        found bad before that still gets a plain 4xx)."""
        if not self.streaming:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.streaming = True
        line = message if message is not None else {"draft": k, "text": text}
        if message is None:
            self.watch(k, text)
        self.wfile.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")

    def fail(self, status, body):
        try:
            if self.streaming:                   # mid-stream: the error is a line
                self.stream(None, None, dict(body, status=status))
            else:
                self.send(status, body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def client_gone(sock):
    """True when the client of sock has closed its side (a request that was answered
    whole has nothing more to read: readable and empty means closed)."""
    import select
    import socket
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def make_handler(models, busy, max_seconds=MAX_SECONDS, trainer=None):
    page = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "web",
                             "index.html"), "rb").read()
    return type("BoundHandler", (Handler,), {"models": models, "busy": busy, "page": page,
                                             "max_seconds": max_seconds,
                                             "trainer": trainer})


class Server(ThreadingHTTPServer):
    """The standard library's threading server with a listen queue for a burst of
    requests (its default of 5 reset connections at 50 at once: now they wait for a
    generation slot and get 503 'busy' if none frees up), and one line on stderr, not a
    traceback, for a request that fails (a client that hung up, ...)."""
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        print(f"serve.py: a request from {client_address[0]} failed "
              f"({type(e).__name__}: {e})", file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.save_dir):
        raise UserError(f"--save_dir {args.save_dir}: no such directory; train a model "
                        f"first: python train.py --save_dir {args.save_dir}", code=2)
    from tfenv import import_tensorflow
    import_tensorflow("sample")
    models = Models(args.save_dir, args.models_dir)
    if not models.dirs:
        raise UserError(f"no trained model in {args.save_dir}/ or below it"
                        f"{' (nor in ' + args.models_dir + '/)' if args.models_dir else ''}"
                        f"; train one first: python train.py --save_dir {args.save_dir}")
    from craft import DEFAULT_MAX_COPY
    for first in list(models.dirs):     # loaded once, before the first visit
        try:
            with models.using(first, DEFAULT_MAX_COPY):
                break
        except UserError as e:          # damaged: off the list, the others still served
            print(f"serve: skipping {first}: {e}", file=sys.stderr)
            models.drop(first)
    if not models.dirs:
        raise UserError(f"no model in {args.save_dir}/ could be loaded (see above); "
                        f"retrain or restore one")
    from pagetrain import Trainer
    trainer = Trainer(args.save_dir, args.songs_dir)
    try:
        server = Server((args.host, args.port),
                        make_handler(models, threading.BoundedSemaphore(
                            args.max_concurrent), args.max_seconds, trainer))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); pick "
                        f"another --port", code=2)
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"serve.py: warning: listening on {args.host}: other machines can use this "
              f"page (and this computer's CPU); use --host 127.0.0.1 to keep it local",
              file=sys.stderr)
    print(f"serve.py: {len(models.dirs)} model(s): {', '.join(models.dirs)}")
    print(f"serve.py: open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/ "
          f"(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        trainer.shutdown()          # a training the page started saves and ends too
    return 0


if __name__ == "__main__":
    run_main(main, "serve.py", fast_exit=True)
