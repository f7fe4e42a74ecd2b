"""Training from the page (pagetrain.py through serve.py): songs in (files in any common
encoding, pasted text), what data/parse.py made of them, train.py run as the shown
command would run it, its progress and curve, stop and continue, the new model in the
picker; bad input in words."""
import base64
import http.client
import os
import pickle
import shlex
import shutil
import time
import urllib.parse

import pytest

from conftest import made_up_text, run
from test_serve import call, needs_chromium, open_chromium, start_server

LRC = ("[ti:made up]\n[ar:nobody]\n[00:01.00]春风吹过小河边\n[00:05.20]我在窗前等你回来\n"
       "[00:09.00]月光洒满旧街道，雨停了我们还在笑\n")


def upload(name, raw):
    return {"name": name, "data": base64.b64encode(raw).decode()}


@pytest.fixture(scope="module")
def panel(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("panel")
    save, songs = root / "save", root / "songs"
    shutil.copytree(trained("lstm"), save / "lyrics")
    proc, url = start_server(save, "--songs_dir", str(songs))
    yield url, save, songs
    proc.terminate()
    proc.wait(timeout=30)


def wait_for(what, timeout=120, every=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out")


def test_songs_are_read_as_parse_py_reads_them(panel):
    url, _, _ = panel
    status, out = call(url, "/api/songs", {
        "files": [upload("a.lrc", LRC.encode("gbk"))], "text": "梦里有一片海\n你好吗",
        "base": "save/lyrics"})
    assert status == 200, out
    assert [f["encoding"] for f in out["files"]] == ["gb18030", "utf-8"]
    assert [f["name"] for f in out["files"]] == ["a.lrc", "the pasted text"]
    assert out["preview"] == ["春风吹过小河边", "我在窗前等你回来", "月光洒满旧街道",
                              "雨停了我们还在笑", "梦里有一片海", "你好吗"]
    assert out["lines"] == 6 and out["chars"] == sum(map(len, out["preview"]))
    # 好 and 吗 are in none of the made-up lines the base learned
    assert out["new_chars"]["count"] == 2 and out["new_chars"]["first"] == "好吗"
    assert out["token"]


@pytest.mark.parametrize("body, status, needle", [
    ({"files": [upload("empty.txt", b"  \n")]}, 400, "input is empty: empty.txt"),
    ({"files": [upload("x.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 10)]}, 400, "binary"),
    ({"files": [upload("en.txt", b"hello world\n")]}, 400, "left in en.txt after cleaning"),
    ({"files": [{"name": "a.txt", "data": "%%%"}]}, 400, "not base64"),
    ({}, 400, "no songs"),
])
def test_bad_songs_are_refused_in_words(panel, body, status, needle):
    url, _, _ = panel
    got, out = call(url, "/api/songs", body)
    assert got == status and needle in out["error"], out


def test_a_50_mb_upload_is_refused_before_it_is_read(panel):
    url, _, _ = panel
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.putrequest("POST", "/api/songs")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * 2 ** 20))
    conn.endheaders()
    conn.send(b'{"files": [')                   # then nothing: the answer comes anyway
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 413 and "at most 4 MB of songs" in body, body


@pytest.mark.parametrize("req, status, needle", [
    ({"name": "../evil"}, 400, "no /, no .."),
    ({"name": "a/b"}, 400, "no /, no .."),
    ({"name": ".hidden"}, 400, "beginning with"),
    ({"name": "ok", "token": "nothing"}, 400, "upload or paste the songs first"),
    ({"name": "ok", "token": ["a", "list"]}, 400, "upload or paste the songs first"),
    ({"name": "ok", "continue": True}, 400, "no model ok"),
    ({"name": "ok", "num_epochs": "-3"}, 400, "num_epochs"),
])
def test_bad_training_requests_are_refused_in_words(panel, req, status, needle):
    url, save, songs = panel
    got, out = call(url, "/api/train", req)
    assert got == status and needle in out["error"], out
    assert sorted(os.listdir(save)) == ["lyrics"] and not os.path.exists(songs / "evil")


@pytest.mark.slow
def test_train_from_the_page_stop_continue_and_write(panel, tmp_path):
    """The panel's whole path: songs, train (the shown command), the model in the picker
    at its first checkpoint marked in training, the curve growing, a second training
    refused, stop (saved), stop again refused, continue (--keep), and lyrics from it."""
    url, save, songs = panel
    status, out = call(url, "/api/songs", {"files": [upload("a.lrc", LRC.encode("gbk"))],
                                           "text": made_up_text(2000), "base": "save/lyrics"})
    assert status == 200, out
    status, st = call(url, "/api/train", {"token": out["token"], "name": "mine",
                                          "base": "save/lyrics", "num_epochs": 1000,
                                          "patience": 0})
    assert status == 200 and st["running"], st
    command = shlex.split(st["command"])
    assert command[:2] == ["python", "train.py"] and "--init_from" in command
    assert command[command.index("--save_dir") + 1].endswith(os.path.join("save", "mine"))
    # one training at a time
    status, other = call(url, "/api/train", {"token": out["token"], "name": "other"})
    assert status == 409 and "one training at a time" in other["error"], other
    # the new model joins the picker at its first checkpoint, marked as in training
    listed = wait_for(lambda: next((m for m in call(url, "/api/models")[1]["models"]
                                    if m["name"] == "save/mine"), None))
    assert listed["training"] and listed["fine_tuned_from"] == "lyrics"
    # the curve grows, from the log analysis/plot.py reads; the progress line is train.py's
    wait_for(lambda: len(call(url, "/api/train")[1]["curve"]["epochs"]) >= 3)
    status, st = call(url, "/api/train")
    assert all(v is not None for v in st["curve"]["train"] + st["curve"]["validate"])
    assert (save / "mine" / "log").is_dir() and (songs / "mine" / "lyrics.txt").is_file()
    wait_for(lambda: call(url, "/api/train")[1]["progress"])
    assert "chars/s" in call(url, "/api/train")[1]["progress"]
    # stop: the run saves, as Ctrl-C does
    status, st = call(url, "/api/train/stop", {})
    assert status == 200
    st = wait_for(lambda: (lambda s: s if not s["running"] else None)(
        call(url, "/api/train")[1]), timeout=60)
    assert st["ended"].startswith("stopped: saved"), st
    epochs = len(st["curve"]["epochs"])
    status, again = call(url, "/api/train/stop", {})
    assert status == 409 and "mine ended already" in again["error"], again
    assert not [m for m in call(url, "/api/models")[1]["models"] if m["training"]]
    # continue: --keep, and the curve goes on from where it was
    status, st = call(url, "/api/train", {"name": "mine", "continue": True,
                                          "num_epochs": epochs + 3, "patience": 0})
    assert status == 200 and "--keep" in st["command"], st
    st = wait_for(lambda: (lambda s: s if not s["running"] else None)(
        call(url, "/api/train")[1]), timeout=120)
    assert st["ended"] == "finished", st
    assert len(st["curve"]["epochs"]) == epochs + 3, st["curve"]
    # lyrics from the new model, on the page
    status, res = call(url, "/api/generate", {"model": "save/mine", "lines": 4, "seed": 1})
    assert status == 200 and len(res["lines"]) == 4, res
    # the shown command, typed in a terminal, trains the same way (the same config)
    mine = pickle.load(open(save / "mine" / "config.pkl", "rb"))
    argv = command[2:]
    argv[argv.index("--save_dir") + 1] = str(tmp_path / "terminal")
    argv[argv.index("--log_dir") + 1] = str(tmp_path / "log")
    argv[argv.index("--num_epochs") + 1] = "1"
    run("train.py", *argv, check=0)
    theirs = pickle.load(open(tmp_path / "terminal" / "config.pkl", "rb"))
    differ = {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
    assert differ <= {"save_dir", "log_dir", "num_epochs"}, \
        {k: (mine.get(k), theirs.get(k)) for k in differ}


def test_a_training_page_never_writes_outside_its_folders(panel):
    url, save, songs = panel
    for name in ("..", "save/../x", "/tmp/x", "x" * 41, "名字 有空格"):
        status, out = call(url, "/api/train", {"name": name, "token": "t"})
        assert status == 400 and out["field"] == "name", (name, out)
    assert not os.path.exists(save.parent / "x")


@pytest.mark.slow
@needs_chromium
def test_the_training_panel_in_a_real_browser(panel, tmp_path):
    """A GBK .lrc file and pasted UTF-8 text in, the preview, train to the first
    checkpoint (the model joins the picker, in training), the curve grows, stop,
    continue, and lyrics from the new model; the shown command is the run's."""
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    url, save, _ = panel

    def picker(d):      # (value, text) of the model picker's options, made anew on polls
        return d.execute_script("return [...document.getElementById('model').options]"
                                ".map((o) => [o.value, o.text])")
    lrc = tmp_path / "歌.lrc"
    lrc.write_bytes(LRC.encode("gbk"))
    driver = open_chromium(tmp_path)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_elements(By.ID, "acrostic"))
        # (open already when this server's last training is shown: not a toggle here)
        driver.execute_script("document.getElementById('songs').open = true")
        driver.find_element(By.ID, "song-files").send_keys(str(lrc))
        driver.execute_script("arguments[0].value = arguments[1]",
                              driver.find_element(By.ID, "song-text"), made_up_text(2000))
        assert Select(driver.find_element(By.ID, "train-base")).first_selected_option \
            .get_attribute("value") == "save/lyrics"
        driver.find_element(By.ID, "read-songs").click()
        wait.until(lambda d: d.find_element(By.ID, "parsed").text)
        parsed = driver.find_element(By.ID, "parsed").text
        assert "歌.lrc: gb18030" in parsed and "the pasted text: utf-8" in parsed, parsed
        assert "春风吹过小河边" in parsed and "[00:" not in parsed
        name = driver.find_element(By.ID, "train-name")
        name.clear()              # (the server's last run fills it in, for "continue")
        name.send_keys("browser")
        driver.find_element(By.ID, "train-epochs").send_keys("1000")
        driver.find_element(By.ID, "train-patience").send_keys("0")
        driver.find_element(By.ID, "train").click()
        wait.until(lambda d: d.find_element(By.ID, "train-command").text)
        assert driver.find_element(By.ID, "train-command").text == \
            call(url, "/api/train")[1]["command"]
        # the first checkpoint: the model in the picker, marked
        wait.until(lambda d: any(v == "save/browser" and "in training" in t
                                 for v, t in picker(d)))
        curve = driver.find_element(By.ID, "curve")
        wait.until(lambda d: int(curve.get_attribute("data-points") or 0) >= 2)
        points = int(curve.get_attribute("data-points"))
        wait.until(lambda d: int(curve.get_attribute("data-points")) > points)  # it grows
        assert len(curve.find_elements(By.CSS_SELECTOR, "polyline")) == 2
        assert "chars/s" in driver.find_element(By.ID, "progress").text
        shots = os.environ.get("LYRICS_SCREENSHOT")
        if shots:                     # README's pictures: bash scripts/screenshots.sh
            for width, height in ((1280, 1100), (375, 2400)):
                driver.set_window_size(width, height)
                wait.until(lambda d: d.execute_script("return window.innerWidth") <= width)
                driver.execute_script("document.getElementById('train-status').scrollIntoView({block: 'end'})")
                driver.save_screenshot(os.path.join(shots, f"train-{width}.png"))
            driver.set_window_size(1200, 800)
        driver.find_element(By.ID, "train-stop").click()
        status = driver.find_element(By.ID, "train-status")
        wait.until(lambda d: "stopped: saved" in status.text)
        epochs = int(curve.get_attribute("data-points"))
        epochs_field = driver.find_element(By.ID, "train-epochs")
        epochs_field.clear()
        epochs_field.send_keys(str(epochs + 2))
        driver.find_element(By.ID, "train-continue").click()
        wait.until(lambda d: "--keep" in d.find_element(By.ID, "train-command").text)
        wait.until(lambda d: "finished" in status.text)
        assert int(curve.get_attribute("data-points")) == epochs + 2
        # lyrics from the new model
        wait.until(lambda d: any(v == "save/browser" and "in training" not in t
                                 for v, t in picker(d)))
        Select(driver.find_element(By.ID, "model")).select_by_value("save/browser")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))
        card = driver.find_elements(By.CSS_SELECTOR, "#results .card")[0]
        assert "save/browser" in card.find_element(By.CSS_SELECTOR, ".meta").text
        assert len(card.find_elements(By.CSS_SELECTOR, ".line")) == 8
    finally:
        driver.quit()
